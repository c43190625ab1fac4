//! What every handler shares.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use instore::{Providers, Timestamp};
use instore_management::{Nudge, ServiceStats};

use crate::auth::ApiToken;

/// Instance counts by status at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountsSample {
    /// When.
    pub at: Timestamp,
    /// Running.
    pub running: u64,
    /// Suspended.
    pub suspended: u64,
    /// Completed.
    pub completed: u64,
}

/// The shared state of one server.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) name: String,
    pub(crate) providers: Providers,
    pub(crate) tokens: Vec<ApiToken>,
    pub(crate) nudge: Option<Nudge>,
    pub(crate) stats: Arc<ServiceStats>,
    pub(crate) history: Mutex<VecDeque<CountsSample>>,
    pub(crate) history_len: usize,
}

impl AppState {
    /// The store's clock now.
    pub(crate) fn now(&self) -> Timestamp {
        self.providers.persistence.clock().now()
    }

    /// Adds a sample, dropping the oldest past the ring's length.
    pub(crate) fn push_sample(&self, sample: CountsSample) {
        let mut h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.push_back(sample);
        while h.len() > self.history_len {
            h.pop_front();
        }
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<CountsSample> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}
