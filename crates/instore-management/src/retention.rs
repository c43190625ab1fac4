//! Retention (SPEC §12 ▲): completed instances last changed longer ago than the store's
//! retention are purged periodically, in small batches, each its own short transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use instore::{QueryProvider, SharedClock};

use crate::execution::chain;
use crate::stats::{Counter, ServiceStats};

#[derive(Debug)]
pub(crate) struct Retention {
    pub(crate) query: Arc<dyn QueryProvider>,
    pub(crate) clock: SharedClock,
    pub(crate) retention: Duration,
    pub(crate) interval: Duration,
    pub(crate) batch: usize,
    pub(crate) stats: Arc<ServiceStats>,
}

impl Retention {
    pub(crate) async fn run(self, stop: CancellationToken) {
        loop {
            self.purge(&stop).await;
            let next = self.clock.now().plus(self.interval);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.clock.sleep_until(next) => {}
            }
        }
    }

    /// One pass: batches until one comes back short.
    async fn purge(&self, stop: &CancellationToken) {
        let before = self.clock.now().minus(self.retention);
        let mut total = 0;
        while !stop.is_cancelled() {
            match self.query.purge_completed(before, self.batch).await {
                Ok(n) => {
                    total += n;
                    self.stats.add(Counter::Purged, n);
                    if n < self.batch as u64 {
                        break;
                    }
                    // Let hosts' transactions in between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "could not purge completed instances; trying again next pass");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(purged = total, %before, "purged completed instances past retention");
        }
    }
}
