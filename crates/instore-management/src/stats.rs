//! Counters of what a service did, for logs, tests and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one [`crate::ManagementService`] (shared: read them while it runs).
#[derive(Debug, Default)]
pub struct ServiceStats {
    read: AtomicU64,
    completed: AtomicU64,
    via_endpoint: AtomicU64,
    failed: AtomicU64,
    given_up: AtomicU64,
    lock_lost: AtomicU64,
    hooks_called: AtomicU64,
    hooks_failed: AtomicU64,
    purged: AtomicU64,
}

/// A copy of [`ServiceStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Commands read from the queue.
    pub read: u64,
    /// Commands executed and completed.
    pub completed: u64,
    /// Of those, executed through a control endpoint.
    pub via_endpoint: u64,
    /// Failed executions (each abandoned for a retry, or given up).
    pub failed: u64,
    /// Failed executions that were the command's last allowed attempt.
    pub given_up: u64,
    /// Outcomes not recorded because the command's queue lock was gone.
    pub lock_lost: u64,
    /// Activation hook calls.
    pub hooks_called: u64,
    /// Activation hook calls that failed.
    pub hooks_failed: u64,
    /// Completed instances purged.
    pub purged: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Read,
    Completed,
    ViaEndpoint,
    Failed,
    GivenUp,
    LockLost,
    HooksCalled,
    HooksFailed,
    Purged,
}

impl ServiceStats {
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let c = match counter {
            Counter::Read => &self.read,
            Counter::Completed => &self.completed,
            Counter::ViaEndpoint => &self.via_endpoint,
            Counter::Failed => &self.failed,
            Counter::GivenUp => &self.given_up,
            Counter::LockLost => &self.lock_lost,
            Counter::HooksCalled => &self.hooks_called,
            Counter::HooksFailed => &self.hooks_failed,
            Counter::Purged => &self.purged,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            read: get(&self.read),
            completed: get(&self.completed),
            via_endpoint: get(&self.via_endpoint),
            failed: get(&self.failed),
            given_up: get(&self.given_up),
            lock_lost: get(&self.lock_lost),
            hooks_called: get(&self.hooks_called),
            hooks_failed: get(&self.hooks_failed),
            purged: get(&self.purged),
        }
    }
}
