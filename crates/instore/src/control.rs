//! The control-command queue (SPEC §10): operators enqueue Suspend / Resume / Terminate / Cancel
//! for an instance, `Delete` removes it at once, and management services read the queue in
//! locked batches and report each command's outcome.
//!
//! The queue's rules are the same everywhere, so they are written down once here (the provider
//! contract on [`ControlProvider`]) and proven by the conformance suite on every provider.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    ErrorLogEntry, InstanceId, OwnerInfo, PropertyBag, StoreError, Timestamp, Uuid, Value,
};

/// A control command (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControlCommand {
    /// Suspend the instance.
    Suspend {
        /// Why.
        reason: String,
    },
    /// Clear suspension.
    Resume,
    /// Complete the instance with status `Terminated`.
    Terminate {
        /// Why.
        reason: String,
    },
    /// Ask the instance to run its cancellation logic.
    Cancel,
    /// Remove the instance and everything that belongs to it (never queued: executed at once).
    Delete,
}

impl ControlCommand {
    /// The command's name (`Suspend`, `Resume`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ControlCommand::Suspend { .. } => "Suspend",
            ControlCommand::Resume => "Resume",
            ControlCommand::Terminate { .. } => "Terminate",
            ControlCommand::Cancel => "Cancel",
            ControlCommand::Delete => "Delete",
        }
    }

    /// The reason argument, if the command has one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ControlCommand::Suspend { reason } | ControlCommand::Terminate { reason } => {
                Some(reason)
            }
            _ => None,
        }
    }

    /// The stored code: 1 suspend, 2 resume, 3 terminate, 4 cancel (delete is never stored).
    pub fn code(&self) -> i16 {
        match self {
            ControlCommand::Suspend { .. } => 1,
            ControlCommand::Resume => 2,
            ControlCommand::Terminate { .. } => 3,
            ControlCommand::Cancel => 4,
            ControlCommand::Delete => 5,
        }
    }

    /// From a stored code and reason.
    pub fn from_code(code: i64, reason: Option<String>) -> Result<Self, StoreError> {
        let reason = reason.unwrap_or_default();
        Ok(match code {
            1 => ControlCommand::Suspend { reason },
            2 => ControlCommand::Resume,
            3 => ControlCommand::Terminate { reason },
            4 => ControlCommand::Cancel,
            5 => ControlCommand::Delete,
            other => {
                return Err(StoreError::Storage(crate::StorageError::corrupt(format!(
                    "unknown control command code {other}; the row was written by a newer instore or is damaged"
                ))))
            }
        })
    }
}

impl fmt::Display for ControlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) if !r.is_empty() => write!(f, "{} ({r})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

impl FromStr for ControlCommand {
    type Err = StoreError;
    /// A command name, case-insensitive (reasons empty).
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let reason = String::new();
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "suspend" => ControlCommand::Suspend { reason },
            "resume" => ControlCommand::Resume,
            "terminate" => ControlCommand::Terminate { reason },
            "cancel" => ControlCommand::Cancel,
            "delete" | "remove" => ControlCommand::Delete,
            _ => {
                return Err(StoreError::invalid(format!(
                    "unknown control command {s:?}; use one of Suspend, Resume, Terminate, Cancel, Delete"
                )))
            }
        })
    }
}

/// The control queue's settings (SPEC §10, §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    /// How long a reader's lock on a command lasts (default 65 s).
    pub lock_time: Duration,
    /// Failed attempts after which a command is given up (default 5).
    pub max_attempts: u32,
    /// Most commands one read returns (default 10).
    pub batch_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            lock_time: Duration::from_secs(65),
            max_attempts: 5,
            batch_size: 10,
        }
    }
}

impl QueueSettings {
    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.lock_time < Duration::from_secs(1) {
            return Err(StoreError::invalid(format!(
                "setting 'queue_lock_time' is {:?}; it must be at least 1s",
                self.lock_time
            )));
        }
        if self.max_attempts == 0 {
            return Err(StoreError::invalid(
                "setting 'queue_max_attempts' is 0; it must be at least 1",
            ));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            return Err(StoreError::invalid(format!(
                "setting 'queue_batch_size' is {}; it must be 1 to 1000",
                self.batch_size
            )));
        }
        Ok(())
    }
}

/// Names of the entries of [`QueuedCommand::metadata`] the store itself supplies (SPEC §10
/// rule 6). The rest of the bag is the instance's own readable metadata.
pub mod handover {
    /// The instance's host type (string).
    pub const HOST_TYPE: &str = "instore:host_type";
    /// The live lock owner's id (UUID), if a live owner holds the instance.
    pub const OWNER: &str = "instore:owner";
    /// The live lock owner's machine (string).
    pub const MACHINE: &str = "instore:machine";
    /// The live lock owner's control endpoint (string), copied from the owner's metadata entry
    /// of the same name, which a host registers with `CreateOwner`.
    pub const CONTROL_ENDPOINT: &str = "instore:control_endpoint";
}

/// Builds the handover bag of a queued command (SPEC §10 rule 6): the instance's readable
/// metadata, its host type, and — when a live owner holds it — that owner's id, machine and
/// control endpoint. Every provider builds it with this function.
pub fn handover_metadata(
    instance_metadata: &PropertyBag,
    host_type: Option<&str>,
    live_holder: Option<&OwnerInfo>,
) -> PropertyBag {
    let mut bag = crate::readable(instance_metadata);
    if let Some(h) = host_type {
        bag.insert(handover::HOST_TYPE.into(), Value::String(h.into()).into());
    }
    if let Some(owner) = live_holder {
        bag.insert(
            handover::OWNER.into(),
            Value::Uuid(owner.id.as_uuid()).into(),
        );
        bag.insert(
            handover::MACHINE.into(),
            Value::String(owner.machine.clone()).into(),
        );
        if let Some(endpoint) = owner.metadata.get(handover::CONTROL_ENDPOINT) {
            bag.insert(handover::CONTROL_ENDPOINT.into(), endpoint.clone());
        }
    }
    bag
}

/// A command a reader took from the queue, locked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedCommand {
    /// The instance.
    pub instance: InstanceId,
    /// The command.
    pub command: ControlCommand,
    /// Failed attempts before this one.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: Timestamp,
    /// This read's lock: pass it to [`ControlProvider::complete`] or
    /// [`ControlProvider::abandon`].
    pub lock: Uuid,
    /// Until when the lock holds.
    pub locked_until: Timestamp,
    /// Instance metadata for the executor ([`handover_metadata`]).
    pub metadata: PropertyBag,
}

/// A queued command as `commands list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Its place in the queue: grows with every enqueue (an overwrite takes a new one).
    pub position: u64,
    /// The instance.
    pub instance: InstanceId,
    /// The command.
    pub command: ControlCommand,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: Timestamp,
    /// While a reader holds it: until when.
    pub locked_until: Option<Timestamp>,
    /// The last failure's message, while it waits for a retry.
    pub last_error: Option<String>,
}

/// Why an execution failed, as reported with [`ControlProvider::abandon`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// A short stable error code ([`StoreError::code`], e.g. `instance_locked`).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The machine that executed it.
    pub machine: String,
}

/// The control provider (SPEC §10 rules 1–8). Each method is one atomic transaction; times are
/// judged by the persistence side's clock.
///
/// The queue holds at most one command per instance, in FIFO order of enqueueing. A command is
/// *locked* while a reader's lock has not expired, *pending* while it has failed at least once
/// (by [`ControlProvider::abandon`] or an expired lock) and waits for its retry.
#[async_trait::async_trait]
pub trait ControlProvider: fmt::Debug + Send + Sync + 'static {
    /// Enqueues `command` for `instance` (rules 2–4), or executes it at once if it is `Delete`
    /// (rule 1: [`ControlProvider::delete`]). A queued command for the instance is overwritten
    /// (and goes to the end of the queue) if neither locked nor pending, else `CommandLocked` /
    /// `CommandPending` and nothing changes. Removes the instance's error-log entry. A missing
    /// instance is `InstanceNotFound`; a completed one `InstanceComplete`.
    async fn enqueue(
        &self,
        instance: InstanceId,
        command: ControlCommand,
    ) -> Result<(), StoreError>;

    /// Removes the instance and everything that belongs to it — keys, promoted values, queued
    /// command, error-log entry — at once (rule 1). A live owner holding it gets `LockLost` on its
    /// next command. A missing instance is `InstanceNotFound`.
    async fn delete(&self, instance: InstanceId) -> Result<(), StoreError>;

    /// Takes up to `settings.batch_size` commands, oldest first, that are neither locked nor
    /// already read by another reader with a live lock, and locks each for `settings.lock_time`
    /// (rule 5). A command whose lock expired counts a failed attempt (code `lock_expired`) first; if
    /// that was its last allowed attempt it is given up (removed; the error-log entry names the
    /// machine of the reader whose lock expired) instead of returned. `machine` is this reader's,
    /// recorded with the locks it takes.
    async fn read_batch(
        &self,
        settings: &QueueSettings,
        machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError>;

    /// Completes a command read with `lock` (rule 7): it is removed. If the lock is no longer
    /// the command's (it expired and another reader took it, or the command was replaced or
    /// deleted) nothing changes and the answer is `CommandLockLost`.
    async fn complete(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError>;

    /// Abandons a command read with `lock` after a failed execution (rule 7): its attempts grow
    /// by one and it is unlocked for a retry, or — at `settings.max_attempts` — removed, and the
    /// instance's error-log entry (rule 8) replaced by this failure. `CommandLockLost` as in
    /// [`ControlProvider::complete`].
    async fn abandon(
        &self,
        instance: InstanceId,
        lock: Uuid,
        failure: CommandFailure,
        settings: &QueueSettings,
    ) -> Result<(), StoreError>;

    /// The queue, oldest first: at most `max` entries whose position is after `after` (`None`:
    /// from the start).
    async fn queued(&self, after: Option<u64>, max: usize) -> Result<Vec<QueueEntry>, StoreError>;

    /// The error log, newest attempt first, at most `max` entries.
    async fn error_log(&self, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError>;
}
