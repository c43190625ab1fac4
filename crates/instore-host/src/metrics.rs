//! The host's metrics, through the `metrics` facade (the server installs the Prometheus
//! exporter; without a recorder these cost nothing).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `instore_timer_lateness_seconds` | histogram | `host_type` | store-clock now minus the timer's due time, when the host loads a runnable instance whose timer fell due |
//! | `instore_host_steps_total` | counter | `host_type`, `outcome` | steps persisted (`idle`, `suspended`, `completed`, `canceled`, `terminated`, `faulted`) or lost (`lost`: the lock or owner was gone at the save) |

use std::time::Duration;

/// Name of the timer lateness histogram.
pub const TIMER_LATENESS_SECONDS: &str = "instore_timer_lateness_seconds";
/// Name of the step counter.
pub const HOST_STEPS_TOTAL: &str = "instore_host_steps_total";

pub(crate) fn timer_lateness(host_type: &str, late: Duration) {
    metrics::histogram!(TIMER_LATENESS_SECONDS, "host_type" => host_type.to_owned())
        .record(late.as_secs_f64());
}

pub(crate) fn step(host_type: &str, outcome: &'static str) {
    metrics::counter!(HOST_STEPS_TOTAL, "host_type" => host_type.to_owned(), "outcome" => outcome)
        .increment(1);
}
