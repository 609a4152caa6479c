//! Fetching the monitors' evidence: for the latest [`EVIDENCE_EPOCHS`] finished epochs, each
//! submission of a monitor whose evidence URL the explorer knows is fetched once from
//! `GET /evidence/{epoch}`, checked against the hash the ledger recorded, judged, and kept in
//! memory for the node pages. A failure is tried again later (backing off), never on a page
//! view: pages read what is kept and never wait on a monitor.
//!
//! Bounds: one request at a time, [`FETCH_TIMEOUT`] each, bodies up to [`MAX_EVIDENCE_BYTES`];
//! at most one entry per (monitor, epoch) wanted, so the genesis monitors times
//! [`EVIDENCE_EPOCHS`]; entries for older epochs are dropped.
//!
//! [`EVIDENCE_EPOCHS`]: crate::model::evidence::EVIDENCE_EPOCHS

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_net::directory::ValidatorUrl;
use umbra_net::http_client::{self, Limits};

use crate::model::Links;
use crate::model::evidence::{EvidenceProblem, Evidences, Examined, Fetched, Wanted, wanted};
use crate::poller::{Cache, now_ms};

/// The longest evidence read: a monitor's default hour (36,000 routes) is about 3 MB.
pub const MAX_EVIDENCE_BYTES: usize = 16 << 20;
/// How long one fetch may take (connecting, sending, reading the whole body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the first retry of a failed fetch; it doubles with each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between retries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// The evidence fetched so far, shared by the fetcher and the pages.
#[derive(Default)]
pub struct EvidenceCache {
    inner: Mutex<Evidences>,
    /// Fetches whose evidence was shown.
    pub fetched_ok: AtomicU64,
    /// Fetches that failed (no answer, not evidence, another epoch's).
    pub fetched_failed: AtomicU64,
    /// Fetches whose evidence does not hash to what the ledger recorded.
    pub fetched_mismatch: AtomicU64,
}

impl EvidenceCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Evidences> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is kept now (cheap: the judged evidence is shared, not copied).
    pub fn view(&self) -> Evidences {
        self.lock().clone()
    }

    /// Whether `want` should be fetched at `now_ms`: never fetched, or failed and due again.
    pub fn due(&self, want: &Wanted, now_ms: u64) -> bool {
        match self.lock().get(&(want.monitor, want.epoch)) {
            None => true,
            Some(Fetched::Examined(_)) => false,
            Some(Fetched::Failed { retry_ms, .. }) => now_ms >= *retry_ms,
        }
    }

    /// Keeps only the entries of `wanted` (older epochs leave).
    pub fn retain(&self, wanted: &[Wanted]) {
        self.lock().retain(|&(monitor, epoch), _| {
            wanted
                .iter()
                .any(|want| want.monitor == monitor && want.epoch == epoch)
        });
    }

    /// Records the outcome of fetching `want` at `now_ms`.
    pub fn record(&self, want: &Wanted, outcome: Result<Examined, EvidenceProblem>, now_ms: u64) {
        let mut inner = self.lock();
        let key = (want.monitor, want.epoch);
        let entry = match outcome {
            Ok(examined) => {
                self.fetched_ok.fetch_add(1, Ordering::Relaxed);
                Fetched::Examined(Arc::new(examined))
            }
            Err(problem) => {
                let counter = match problem {
                    EvidenceProblem::Mismatch { .. } => &self.fetched_mismatch,
                    _ => &self.fetched_failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let attempts = match inner.get(&key) {
                    Some(Fetched::Failed { attempts, .. }) => attempts.saturating_add(1),
                    _ => 1,
                };
                Fetched::Failed {
                    problem,
                    attempts,
                    retry_ms: now_ms.saturating_add(retry_after(attempts)),
                }
            }
        };
        inner.insert(key, entry);
    }
}

/// The wait (ms) after the `attempts`-th failure: [`FIRST_RETRY`], doubling, at most
/// [`LONGEST_RETRY`].
pub fn retry_after(attempts: u32) -> u64 {
    let first = FIRST_RETRY.as_millis() as u64;
    let doubled = first.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    doubled.min(LONGEST_RETRY.as_millis() as u64)
}

/// Fetches the evidence the current snapshot calls for until `stop`, every `interval`.
pub async fn fetch_evidence(
    ledger: Arc<Cache>,
    evidence: Arc<EvidenceCache>,
    links: Links,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        if let Some(snapshot) = ledger.current().0 {
            let wanted = wanted(&snapshot, &links);
            evidence.retain(&wanted);
            for want in wanted {
                if !evidence.due(&want, now_ms()) {
                    continue;
                }
                let outcome = tokio::select! {
                    outcome = fetch(&want) => outcome,
                    () = stop.cancelled() => return,
                };
                log(&want, &outcome);
                evidence.record(&want, outcome, now_ms());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn log(want: &Wanted, outcome: &Result<Examined, EvidenceProblem>) {
    let monitor = &want.base;
    match outcome {
        Ok(_) => debug!(%monitor, epoch = want.epoch, "evidence fetched and checked"),
        Err(problem @ EvidenceProblem::Mismatch { .. }) => {
            warn!(%monitor, epoch = want.epoch, %problem, "evidence not shown");
        }
        Err(problem) => {
            info!(%monitor, epoch = want.epoch, %problem, "evidence not fetched; tried again later")
        }
    }
}

/// Fetches, checks and judges `want` (the judging off the event loop).
async fn fetch(want: &Wanted) -> Result<Examined, EvidenceProblem> {
    let failed = |reason: String| EvidenceProblem::Fetch { reason };
    let base: ValidatorUrl = want.base.parse().map_err(|_| {
        failed(format!(
            "{:?}: the explorer fetches evidence from http://host:port only",
            want.base
        ))
    })?;
    let address = base
        .resolve()
        .await
        .map_err(|error| failed(error.to_string()))?;
    let limits = Limits {
        timeout: FETCH_TIMEOUT,
        max_body: MAX_EVIDENCE_BYTES,
    };
    let path = format!("/evidence/{}", want.epoch);
    let response = http_client::get(address, &path, limits)
        .await
        .map_err(|error| failed(error.to_string()))?;
    if response.status != 200 {
        return Err(failed(format!(
            "{path} answered HTTP {}{}",
            response.status,
            if response.status == 404 {
                " (the monitor no longer keeps it, or never had it)"
            } else {
                ""
            }
        )));
    }
    let json = String::from_utf8(response.body).map_err(|_| EvidenceProblem::Unreadable {
        reason: "not UTF-8".into(),
    })?;
    let (epoch, recorded) = (want.epoch, want.recorded);
    tokio::task::spawn_blocking(move || Examined::examine(&json, epoch, &recorded))
        .await
        .map_err(|error| failed(format!("judging it failed: {error}")))?
}

#[cfg(test)]
mod tests {
    use umbra_ledger::{Hash, PublicKey};

    use super::*;

    fn want(epoch: u64) -> Wanted {
        Wanted {
            monitor: PublicKey([1; 32]),
            epoch,
            recorded: Hash([2; 32]),
            base: "http://127.0.0.1:1".into(),
        }
    }

    #[test]
    fn failures_are_retried_later_and_successes_never() {
        let cache = EvidenceCache::default();
        let first = want(7);
        assert!(cache.due(&first, 0));
        let problem = || EvidenceProblem::Fetch {
            reason: "cannot connect".into(),
        };
        cache.record(&first, Err(problem()), 1_000);
        assert!(!cache.due(&first, 1_000));
        assert!(cache.due(&first, 11_000));
        cache.record(&first, Err(problem()), 11_000);
        // the second failure waits twice as long
        assert!(!cache.due(&first, 30_000));
        assert!(cache.due(&first, 31_000));
        assert_eq!(retry_after(1), 10_000);
        assert_eq!(retry_after(30), 600_000);
        let evidence = crate::model::fixture::evidence();
        let examined = Examined::examine(&evidence.to_json(), 2, &Hash(evidence.hash().0)).unwrap();
        cache.record(&want(2), Ok(examined), 0);
        assert!(!cache.due(&want(2), u64::MAX));
        assert_eq!(cache.fetched_ok.load(Ordering::Relaxed), 1);
        assert_eq!(cache.fetched_failed.load(Ordering::Relaxed), 2);
        // older epochs leave
        cache.retain(&[want(2)]);
        assert_eq!(cache.view().len(), 1);
        assert!(cache.due(&first, 0));
    }
}
