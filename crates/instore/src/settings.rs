//! Store settings (serializable), kept apart from components such as the clock and provider.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{EncodingSettings, QueueSettings, StoreError};

/// What happens to a completed instance (SPEC §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CompletionAction {
    /// The instance stays, `Completed`, visible to queries until retention purges it.
    #[default]
    Keep,
    /// Every row of the instance is deleted.
    DeleteAll,
}

/// What a load does when another live owner holds the lock (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LockRetry {
    /// Answer `InstanceLocked` at once.
    #[default]
    NoRetry,
    /// Retry every 5 s.
    BasicRetry,
    /// Retry after 100 ms, growing by a random factor, capped at 10 s.
    AggressiveRetry,
}

/// Settings of an [`crate::InstanceStore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// Lease of new owners (default 60 s, minimum 1 s).
    pub lease: Duration,
    /// How often leases are renewed (default 30 s, minimum 1 s, less than the lease).
    pub renew_every: Duration,
    /// Fallback poll for runnable instances made runnable by other processes (default 5 s).
    pub detection_poll: Duration,
    /// Register a fresh owner when one is lost (default on).
    pub auto_recover_owner: bool,
    /// Retry policy for `InstanceLocked` on loads.
    pub lock_retry: LockRetry,
    /// What completing an instance does.
    pub completion: CompletionAction,
    /// Maximum encoded size of an instance's data + metadata (default 16 MiB).
    pub max_payload_bytes: usize,
    /// Bag encoding.
    pub encoding: EncodingSettings,
    /// Register the built-in suspension extension (default off in the bare store; the host
    /// runtime turns it on).
    pub suspension_extension: bool,
    /// Names of data values projected into indexed, typed columns for queries (SPEC §12
    /// "Promotions"); default none.
    pub promotions: Vec<String>,
    /// Completed instances last changed longer ago than this are purged (default 7 days;
    /// `None` keeps them forever).
    pub retention: Option<Duration>,
    /// The control queue's lock time, retries and batch size.
    pub queue: QueueSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(30),
            detection_poll: Duration::from_secs(5),
            auto_recover_owner: true,
            lock_retry: LockRetry::NoRetry,
            completion: CompletionAction::Keep,
            max_payload_bytes: 16 * 1024 * 1024,
            encoding: EncodingSettings::default(),
            suspension_extension: false,
            promotions: Vec::new(),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            queue: QueueSettings::default(),
        }
    }
}

impl StoreSettings {
    /// Checks the settings; the error names the setting and the allowed range.
    pub fn validate(&self) -> Result<(), StoreError> {
        let second = Duration::from_secs(1);
        if self.lease < second {
            return Err(StoreError::invalid(format!(
                "setting 'lease' is {:?}; it must be at least 1s",
                self.lease
            )));
        }
        if self.renew_every < second {
            return Err(StoreError::invalid(format!(
                "setting 'renew_every' is {:?}; it must be at least 1s",
                self.renew_every
            )));
        }
        if self.renew_every >= self.lease {
            return Err(StoreError::invalid(format!(
                "setting 'renew_every' ({:?}) must be shorter than 'lease' ({:?}), or leases end between renewals",
                self.renew_every, self.lease
            )));
        }
        if self.detection_poll < Duration::from_millis(10) {
            return Err(StoreError::invalid(format!(
                "setting 'detection_poll' is {:?}; it must be at least 10ms",
                self.detection_poll
            )));
        }
        for name in &self.promotions {
            if name.is_empty() {
                return Err(StoreError::invalid(
                    "setting 'promotions' holds an empty name; name the data values to promote",
                ));
            }
        }
        if self.retention.is_some_and(|r| r < Duration::from_secs(1)) {
            return Err(StoreError::invalid(format!(
                "setting 'retention' is {:?}; it must be at least 1s (or absent to keep completed instances)",
                self.retention.unwrap_or_default()
            )));
        }
        self.queue.validate()?;
        if self.max_payload_bytes == 0 {
            return Err(StoreError::invalid(
                "setting 'max_payload_bytes' is 0; it must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        StoreSettings::default().validate().unwrap();
        let bad = StoreSettings {
            lease: Duration::from_millis(10),
            ..StoreSettings::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("'lease'"));
        let bad = StoreSettings {
            renew_every: Duration::from_secs(60),
            ..StoreSettings::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("'renew_every'"));
    }
}
