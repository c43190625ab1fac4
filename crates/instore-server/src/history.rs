//! Counts by status over time, for the dashboard's chart: a task samples the store's group count
//! by status every interval into a ring buffer (memory only; a restart starts a new chart).

use std::sync::Arc;
use std::time::Duration;

use instore::{GroupBy, InstanceFilter, InstanceStatus};
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, CountsSample};

/// Takes one sample now (a group count by status: cheap, every provider keeps totals).
pub(crate) async fn sample(state: &AppState) -> Result<CountsSample, instore::StoreError> {
    let groups = state
        .providers
        .query
        .group_count(&InstanceFilter::all(), GroupBy::Status)
        .await?;
    let get = |s: InstanceStatus| {
        groups
            .iter()
            .find(|g| g.key.as_deref() == Some(s.name()))
            .map_or(0, |g| g.count)
    };
    Ok(CountsSample {
        at: state.now(),
        running: get(InstanceStatus::Running),
        suspended: get(InstanceStatus::Suspended),
        completed: get(InstanceStatus::Completed),
    })
}

/// Samples every `every` until shutdown. Wall-clock paced (it only feeds a chart).
pub(crate) async fn run(state: Arc<AppState>, every: Duration, shutdown: CancellationToken) {
    loop {
        match sample(&state).await {
            Ok(s) => state.push_sample(s),
            Err(e) => tracing::warn!(error = %e, "sampling counts by status failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
