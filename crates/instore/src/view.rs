//! The result snapshot of a command (SPEC §1 "instance view").

use std::collections::BTreeMap;

use crate::{ExceptionInfo, ExecutionStatus, InstanceId, KeyId, OwnerId, PropertyBag, Timestamp};

/// The lifecycle state of an instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum InstanceState {
    /// The view is not bound to an instance, or the command does not say.
    #[default]
    Unknown,
    /// Created but never saved with data.
    Uninitialized,
    /// Saved with data at least once.
    Initialized,
    /// Completed: never loaded or saved again.
    Completed,
}

/// The state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyState {
    /// The key leads to its instance.
    Associated,
    /// The key is completed: loads by it answer `InstanceKeyComplete` until it is freed.
    Completed,
}

/// A key as a view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyView {
    /// Its state.
    pub state: KeyState,
    /// Its metadata (write-only values left out).
    pub metadata: PropertyBag,
}

/// Why an instance is suspended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Suspension {
    /// The reason given.
    pub reason: String,
    /// The exception that caused it, if any.
    pub exception: Option<ExceptionInfo>,
}

/// A host type with runnable instances but no live owner (the answer of `QueryActivatable`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Activatable {
    /// The host type.
    pub host_type: String,
    /// How many of its instances are runnable.
    pub runnable_count: u64,
}

/// An instance as a provider read it; the part of a view that comes from storage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceSnapshot {
    /// The instance.
    pub instance: InstanceId,
    /// Its state.
    pub state: InstanceState,
    /// The lock epoch (SPEC §5).
    pub lock_version: u64,
    /// Whether the caller holds the lock after the operation.
    pub locked: bool,
    /// The data (with write-only values: the runtime leaves them out of views).
    pub data: PropertyBag,
    /// The metadata (likewise).
    pub metadata: PropertyBag,
    /// Keys, associated and completed.
    pub keys: BTreeMap<KeyId, KeyView>,
    /// Execution status last saved.
    pub status: ExecutionStatus,
    /// Next timer due.
    pub timer: Option<Timestamp>,
    /// Bookmarks last saved.
    pub bookmarks: Vec<String>,
    /// Suspension, if suspended.
    pub suspension: Option<Suspension>,
    /// The host type that runs it.
    pub host_type: Option<String>,
}

/// The result of a command.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct InstanceView {
    /// The owner the handle is bound to.
    pub owner: Option<OwnerId>,
    /// The instance the handle is bound to.
    pub instance: Option<InstanceId>,
    /// The instance's state.
    pub state: InstanceState,
    /// The lock epoch while the handle holds the lock; fence side effects with it.
    pub lock_version: Option<u64>,
    /// The instance data, without write-only values.
    pub data: PropertyBag,
    /// The instance metadata, without write-only values.
    pub metadata: PropertyBag,
    /// Keys of the instance.
    pub keys: BTreeMap<KeyId, KeyView>,
    /// Execution status.
    pub status: Option<ExecutionStatus>,
    /// Next timer due.
    pub timer: Option<Timestamp>,
    /// Bookmarks.
    pub bookmarks: Vec<String>,
    /// Suspension, if suspended.
    pub suspension: Option<Suspension>,
    /// The host type that runs it.
    pub host_type: Option<String>,
    /// Answer of `QueryActivatable`.
    pub activatable: Vec<Activatable>,
}

impl InstanceView {
    /// Whether the handle holds the instance's lock after this command.
    pub fn is_locked(&self) -> bool {
        self.lock_version.is_some()
    }
}
