//! The solo sequencer: one validator orders every block itself and commits it to redb at once.
//! The embedded default for `umbra localnet` and most tests; its certificates carry one
//! signature.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ValidatorError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::Sequencer;
use crate::api::Counters;
use crate::chain::Chain;
use crate::duties::Duties;

/// One process decides every block.
pub struct Solo {
    /// The shortest time between blocks: a transaction that finds the chain idle is committed
    /// at once, others wait for the next block.
    pub block_interval: Duration,
    /// The most transactions in one block.
    pub max_block_transactions: usize,
}

impl Sequencer for Solo {
    async fn run(
        self,
        chain: Arc<Chain>,
        duties: Duties,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Result<(), ValidatorError> {
        // a block at most every block_interval; a transaction that finds the chain idle is
        // committed at once
        let mut ticker = tokio::time::interval(self.block_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_block = tokio::time::Instant::now() - self.block_interval;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {}
                () = chain.arrived() => {
                    let wait = (last_block + self.block_interval)
                        .saturating_duration_since(tokio::time::Instant::now());
                    if !wait.is_zero() {
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            duties.prepare_issuer_keys(&chain).await;
            let now = crate::now_ms();
            let due = chain.read(|state| {
                let nonce = state.account(&duties.key()).nonce;
                duties.due(state, now, nonce, 0)
            });
            for transaction in due {
                if let Err(rejected) = chain.submit(transaction, now) {
                    debug!(%rejected, "own duty transaction not queued");
                }
            }
            if chain.queued() == 0 {
                continue;
            }
            let block = chain.propose(now, self.max_block_transactions);
            last_block = tokio::time::Instant::now();
            let outcomes = chain.commit(&block)?;
            let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
            counters.blocks.fetch_add(1, Ordering::Relaxed);
            counters
                .applied
                .fetch_add((outcomes.len() - failed) as u64, Ordering::Relaxed);
            counters.failed.fetch_add(failed as u64, Ordering::Relaxed);
            let (height, epoch) = chain.read(|state| (state.height(), state.epoch().number));
            debug!(
                height,
                transactions = outcomes.len(),
                failed,
                "block committed"
            );
            if block
                .transactions
                .iter()
                .any(|transaction| matches!(transaction.action, umbra_ledger::Action::AdvanceEpoch))
            {
                info!(height, epoch, "epoch started");
            }
        }
    }
}
