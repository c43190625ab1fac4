//! The service's settings (serializable), kept apart from its components (store, providers,
//! endpoints, hooks).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use instore::StoreError;

/// How a [`crate::ManagementService`] paces itself. The queue's own rules (lock time, attempts,
/// batch size) are [`instore::QueueSettings`]; these are the service's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagementSettings {
    /// How long the reader waits after a read found the queue empty (default 1 s). A
    /// [`crate::Nudge`], or a failed command coming up for its retry, wakes it sooner.
    pub poll_interval: Duration,
    /// Timeout of each store command and each control-endpoint call (default 30 s).
    pub command_timeout: Duration,
    /// How long a failed command is held before it is handed back for its retry: this after the
    /// first failure, doubling after each further one (default 1 s).
    pub retry_delay: Duration,
    /// The longest retry delay (default 30 s). A delay never runs past three quarters of the
    /// command's queue lock, so the failure is always reported before the lock expires.
    pub retry_delay_max: Duration,
    /// Most commands executing (or held for a retry) at once (default 64).
    pub max_in_flight: usize,
    /// How often the activatable host types are looked up (default 5 s); the provider's
    /// wake-ups trigger an earlier look, at most one a second.
    pub activation_interval: Duration,
    /// Least time between two calls of one host type's activation hook (default 30 s).
    pub activation_debounce: Duration,
    /// How long one activation hook call may take (default 10 s).
    pub hook_timeout: Duration,
    /// How often completed instances past the store's retention are purged (default 60 s).
    pub purge_interval: Duration,
    /// Instances deleted per purge transaction (default 100): small, so no lock is held long.
    pub purge_batch: usize,
    /// How long stopping waits for commands being executed before abandoning the wait
    /// (default 5 s; their queue locks then expire and count as a failed attempt).
    pub shutdown_grace: Duration,
}

impl Default for ManagementSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            command_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            retry_delay_max: Duration::from_secs(30),
            max_in_flight: 64,
            activation_interval: Duration::from_secs(5),
            activation_debounce: Duration::from_secs(30),
            hook_timeout: Duration::from_secs(10),
            purge_interval: Duration::from_secs(60),
            purge_batch: 100,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ManagementSettings {
    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        let at_least = |name: &str, value: Duration, min: Duration| {
            if value < min {
                Err(StoreError::invalid(format!(
                    "setting '{name}' is {value:?}; it must be at least {min:?}"
                )))
            } else {
                Ok(())
            }
        };
        let ms = Duration::from_millis;
        at_least("poll_interval", self.poll_interval, ms(10))?;
        at_least("command_timeout", self.command_timeout, ms(100))?;
        at_least("activation_interval", self.activation_interval, ms(10))?;
        at_least("hook_timeout", self.hook_timeout, ms(100))?;
        at_least("purge_interval", self.purge_interval, ms(10))?;
        if self.retry_delay > self.retry_delay_max {
            return Err(StoreError::invalid(format!(
                "setting 'retry_delay' ({:?}) must not exceed 'retry_delay_max' ({:?})",
                self.retry_delay, self.retry_delay_max
            )));
        }
        if self.max_in_flight == 0 {
            return Err(StoreError::invalid(
                "setting 'max_in_flight' is 0; it must be at least 1",
            ));
        }
        if self.purge_batch == 0 {
            return Err(StoreError::invalid(
                "setting 'purge_batch' is 0; it must be at least 1",
            ));
        }
        Ok(())
    }

    /// The delay before the retry of a command that has now failed `failures` times (1 or more).
    pub fn retry_delay_after(&self, failures: u32) -> Duration {
        let doubling = 2u32.saturating_pow(failures.saturating_sub(1));
        self.retry_delay
            .saturating_mul(doubling)
            .min(self.retry_delay_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        ManagementSettings::default().validate().unwrap();
        let bad = ManagementSettings {
            max_in_flight: 0,
            ..ManagementSettings::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("'max_in_flight'"));
        let bad = ManagementSettings {
            poll_interval: Duration::ZERO,
            ..ManagementSettings::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("'poll_interval'"));
    }

    #[test]
    fn retry_delays_double_up_to_the_maximum() {
        let s = ManagementSettings::default();
        let delays: Vec<u64> = (1..=7).map(|n| s.retry_delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(s.retry_delay_after(100), Duration::from_secs(30));
    }
}
