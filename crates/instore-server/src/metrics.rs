//! Prometheus metrics at `/metrics`.
//!
//! The process installs one `metrics` recorder (the Prometheus exporter, without an HTTP listener
//! of its own); everything recorded through the `metrics` facade — by the core runtime (command
//! latencies, lock conflicts), the host runtime (timer lateness, steps) or this server — shows
//! in the rendered text. Store-wide gauges are sampled from the providers at scrape time, so a
//! scrape always shows the store as it is:
//!
//! | metric | from |
//! |---|---|
//! | `instore_runnable_instances{host_type}` | `runnable_backlog()`: instances runnable now (SPEC §8), with or without a live host of their type |
//! | `instore_runnable_oldest_age_seconds{host_type}` | `runnable_backlog()`: how long the one runnable longest has waited |
//! | `instore_queue_depth`, `instore_queue_oldest_age_seconds` | count of instances with a queued command; the queue's head |
//! | `instore_owners_alive` | owners whose lease is alive |
//! | `instore_management_commands_total{outcome}` | the management service's counters |
//!
//! The runnable gauges cover every host type known from owners, running instances and the
//! backlog itself (0 when nothing of the type is runnable); instances without a host type are
//! left out (no host ever claims them; queries show them as `blocked_on: no_live_host`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use instore::{GroupBy, InstanceFilter, InstanceStatus, Timestamp};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Histogram buckets (seconds): sub-millisecond commands to minute-late timers.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. If another recorder was installed
/// first, a detached one is returned (it renders only what is recorded into it) and a warning
/// logged.
pub fn recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        match builder().install_recorder() {
            Ok(handle) => {
                describe();
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics shows only the server's own samples");
                builder().build_recorder().handle()
            }
        }
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "instore_command_duration_seconds",
        Unit::Seconds,
        "Latency of store commands, by command"
    );
    describe_counter!(
        "instore_lock_conflicts_total",
        "Commands that found the instance locked by another live owner"
    );
    describe_gauge!(
        "instore_runnable_instances",
        "Instances runnable now, by host type, whether or not a live host of the type exists (the backlog)"
    );
    describe_gauge!(
        "instore_runnable_oldest_age_seconds",
        Unit::Seconds,
        "How long the longest-runnable instance of a host type has waited"
    );
    describe_gauge!("instore_queue_depth", "Control commands queued");
    describe_gauge!(
        "instore_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest queued control command"
    );
    describe_gauge!("instore_owners_alive", "Owners whose lease is alive");
    describe_counter!(
        "instore_management_commands_total",
        "Control commands handled by this server's management service, by outcome"
    );
    describe_gauge!("instore_instances", "Instances in the store, by status");
}

fn age_seconds(now: Timestamp, since: Timestamp) -> f64 {
    let micros = now.as_micros().saturating_sub(since.as_micros()).max(0);
    micros as f64 / 1e6
}

/// Samples the store into the gauges, then renders every metric. A provider that fails leaves
/// its gauges as they were and is logged; the scrape still answers.
pub(crate) async fn render(state: &AppState) -> String {
    if let Err(e) = sample(state).await {
        tracing::warn!(error = %e, "sampling store metrics failed");
    }
    recorder().render()
}

async fn sample(state: &AppState) -> Result<(), instore::StoreError> {
    let now = state.now();
    let stats = state.stats.snapshot();
    for (outcome, value) in [
        ("read", stats.read),
        ("completed", stats.completed),
        ("via_endpoint", stats.via_endpoint),
        ("failed", stats.failed),
        ("given_up", stats.given_up),
    ] {
        metrics::counter!("instore_management_commands_total", "outcome" => outcome)
            .absolute(value);
    }

    let owners = state.providers.persistence.owners().await?;
    let alive = owners.iter().filter(|o| o.lease_expires_at > now).count();
    metrics::gauge!("instore_owners_alive").set(alive as f64);

    let query = &state.providers.query;
    let by_status = query
        .group_count(&InstanceFilter::all(), GroupBy::Status)
        .await?;
    for s in InstanceStatus::ALL {
        let n = by_status
            .iter()
            .find(|g| g.key.as_deref() == Some(s.name()))
            .map_or(0, |g| g.count);
        metrics::gauge!("instore_instances", "status" => s.name()).set(n as f64);
    }

    let queued = query
        .count(&InstanceFilter {
            has_pending_command: Some(true),
            ..InstanceFilter::default()
        })
        .await?;
    metrics::gauge!("instore_queue_depth").set(queued as f64);
    let head = state.providers.control.queued(None, 1).await?;
    let oldest = head
        .first()
        .map_or(0.0, |e| age_seconds(now, e.enqueued_at));
    metrics::gauge!("instore_queue_oldest_age_seconds").set(oldest);

    // Host types: of owners, and of running instances (from the maintained totals).
    let mut host_types: BTreeSet<String> =
        owners.iter().filter_map(|o| o.host_type.clone()).collect();
    let running = InstanceFilter {
        status: vec![InstanceStatus::Running],
        ..InstanceFilter::default()
    };
    host_types.extend(
        query
            .group_count(&running, GroupBy::HostType)
            .await?
            .into_iter()
            .filter_map(|g| g.key),
    );
    // The backlog: one statement for every host type, live hosts or not.
    let backlog = query.runnable_backlog().await?;
    host_types.extend(backlog.iter().filter_map(|b| b.host_type.clone()));
    for host_type in &host_types {
        let entry = backlog
            .iter()
            .find(|b| b.host_type.as_ref() == Some(host_type));
        let (count, age) = entry.map_or((0, 0.0), |b| (b.count, age_seconds(now, b.oldest_since)));
        metrics::gauge!("instore_runnable_instances", "host_type" => host_type.clone())
            .set(count as f64);
        metrics::gauge!("instore_runnable_oldest_age_seconds", "host_type" => host_type.clone())
            .set(age);
    }
    Ok(())
}
