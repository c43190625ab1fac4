//! The one error enum of the persistence API (SPEC §6.7). Each variant says what to do.

use crate::{InstanceId, KeyId, OwnerId, PropertyBag};

/// Everything a command, a wait or opening a store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The instance does not exist (or was never saved with data) and the command did not
    /// accept an uninitialized instance. Create it (`accept_uninitialized`) or check the id.
    #[error("instance not ready: instance={instance}")]
    InstanceNotReady {
        /// The instance.
        instance: InstanceId,
    },
    /// The instance has completed; it can no longer be loaded or saved. Move on.
    #[error("instance complete: instance={instance}")]
    InstanceComplete {
        /// The instance.
        instance: InstanceId,
    },
    /// Another live owner holds the lock. Retry after its lease ends, or move on; the holder's
    /// readable metadata says who it is.
    #[error("instance is locked: instance={instance} owner={owner}")]
    InstanceLocked {
        /// The instance.
        instance: InstanceId,
        /// The owner holding it.
        owner: OwnerId,
        /// The holder's metadata, without write-only values.
        owner_metadata: PropertyBag,
    },
    /// The lock this handle held is gone (lease expired, taken over, or the instance deleted).
    /// The handle is freed: create a new handle and reload.
    #[error("lock lost: instance={instance}")]
    LockLost {
        /// The instance.
        instance: InstanceId,
    },
    /// The same owner holds this instance through another live handle. Use that handle, or free
    /// it first.
    #[error("instance is held by another handle of the same owner: instance={instance}")]
    HandleConflict {
        /// The instance.
        instance: InstanceId,
    },
    /// The handle's owner lost its lease. Its handles are dead: create new handles (with
    /// auto-recovery on, for the store's replacement owner).
    #[error("owner lost: owner={owner}")]
    OwnerLost {
        /// The lost owner.
        owner: OwnerId,
    },
    /// The key is not associated with an instance (unknown), or not in the state the operation
    /// needs (complete it before freeing it). Check the key.
    #[error("instance key not ready: key={key}")]
    InstanceKeyNotReady {
        /// The key.
        key: KeyId,
    },
    /// The key has completed: it no longer leads to a live instance. Free it, or use another key.
    #[error("instance key complete: key={key}")]
    InstanceKeyComplete {
        /// The key.
        key: KeyId,
    },
    /// The key is already present (on another instance, or already on this one). Use another
    /// key, or load the instance it belongs to.
    #[error("instance key collision: key={key} instance={instance}")]
    InstanceKeyCollision {
        /// The key.
        key: KeyId,
        /// The instance it belongs to.
        instance: InstanceId,
    },
    /// A key was to create an instance whose id already names an initialized instance. Load
    /// that instance instead, or pick another id.
    #[error("instance collision: instance={instance}")]
    InstanceCollision {
        /// The instance.
        instance: InstanceId,
    },
    /// The instance is suspended (suspension extension). Resume it, or load with
    /// `allow_suspended`.
    #[error("instance suspended: instance={instance} reason={reason:?}")]
    InstanceSuspended {
        /// The instance.
        instance: InstanceId,
        /// Why it was suspended.
        reason: String,
    },
    /// No provider or extension of this store understands the command. Register the extension
    /// that provides it.
    #[error("command not supported: command={command}")]
    CommandNotSupported {
        /// The command's name.
        command: String,
    },
    /// Another command is running on this handle. Wait for it; one command per handle at a time.
    #[error("another command is running on this handle")]
    CommandOverlap,
    /// The handle is already bound to an owner. Use a new handle.
    #[error("handle is already bound to an owner: owner={owner}")]
    AlreadyBoundToOwner {
        /// The bound owner.
        owner: OwnerId,
    },
    /// The handle is already bound to an instance. Use a new handle.
    #[error("handle is already bound to an instance: instance={instance}")]
    AlreadyBoundToInstance {
        /// The bound instance.
        instance: InstanceId,
    },
    /// The command needs an owner created with a host type. Create the owner with `host_type`.
    #[error("the handle's owner has no host type; create the owner with a host type")]
    HostTypeRequired,
    /// The command or its input is invalid; `what` says what is wrong and where. Fix the input.
    #[error("invalid: {what}")]
    Invalid {
        /// What is wrong, naming the bag, entry, key or field.
        what: String,
    },
    /// The instance's encoded data and metadata would exceed the store's size limit. Nothing was
    /// changed. Save less, mark large values `OPTIONAL`, or raise the limit.
    #[error("payload too large: size={size} limit={limit}")]
    PayloadTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The store's limit in bytes.
        limit: usize,
    },
    /// The command did not finish in time. The handle is freed; the command took effect entirely
    /// or not at all. Reload to find out.
    #[error("command timed out")]
    Timeout,
    /// No instance has this id (a control command or a delete named it). Check the id.
    #[error("instance not found: instance={instance}")]
    InstanceNotFound {
        /// The instance.
        instance: InstanceId,
    },
    /// A management service is executing the instance's queued control command right now, so it
    /// cannot be replaced. Wait for it to finish (at most the queue's lock time) and try again.
    #[error("a control command for instance {instance} is being executed; try again when it has finished")]
    CommandLocked {
        /// The instance.
        instance: InstanceId,
    },
    /// The instance's queued control command has failed and waits for a retry, so it cannot be
    /// replaced. Wait until it succeeds or is given up (see the error log), then try again.
    #[error("the control command for instance {instance} failed {attempts} time(s) and waits for a retry; try again once it succeeded or was given up")]
    CommandPending {
        /// The instance.
        instance: InstanceId,
        /// Its failed attempts so far.
        attempts: u32,
    },
    /// The reader's lock on a control command is gone (it expired and another reader took the
    /// command, or the command was replaced or deleted). Its outcome was not recorded.
    #[error("control command lock lost: instance={instance}")]
    CommandLockLost {
        /// The instance.
        instance: InstanceId,
    },
    /// The storage failed. [`StorageError::is_transient`] says whether a retry can help.
    #[error("storage failure")]
    Storage(#[source] StorageError),
}

impl StoreError {
    /// Whether retrying the same command later may succeed without changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Storage(s) => s.is_transient(),
            StoreError::InstanceLocked { .. }
            | StoreError::Timeout
            | StoreError::CommandOverlap
            | StoreError::CommandLocked { .. }
            | StoreError::CommandPending { .. } => true,
            _ => false,
        }
    }

    /// A short stable code for logs, metrics and error logs (`instance_locked`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::InstanceNotReady { .. } => "instance_not_ready",
            StoreError::InstanceComplete { .. } => "instance_complete",
            StoreError::InstanceLocked { .. } => "instance_locked",
            StoreError::LockLost { .. } => "lock_lost",
            StoreError::HandleConflict { .. } => "handle_conflict",
            StoreError::OwnerLost { .. } => "owner_lost",
            StoreError::InstanceKeyNotReady { .. } => "instance_key_not_ready",
            StoreError::InstanceKeyComplete { .. } => "instance_key_complete",
            StoreError::InstanceKeyCollision { .. } => "instance_key_collision",
            StoreError::InstanceCollision { .. } => "instance_collision",
            StoreError::InstanceSuspended { .. } => "instance_suspended",
            StoreError::CommandNotSupported { .. } => "command_not_supported",
            StoreError::CommandOverlap => "command_overlap",
            StoreError::AlreadyBoundToOwner { .. } => "already_bound_to_owner",
            StoreError::AlreadyBoundToInstance { .. } => "already_bound_to_instance",
            StoreError::HostTypeRequired => "host_type_required",
            StoreError::Invalid { .. } => "invalid",
            StoreError::PayloadTooLarge { .. } => "payload_too_large",
            StoreError::Timeout => "timeout",
            StoreError::InstanceNotFound { .. } => "instance_not_found",
            StoreError::CommandLocked { .. } => "command_locked",
            StoreError::CommandPending { .. } => "command_pending",
            StoreError::CommandLockLost { .. } => "command_lock_lost",
            StoreError::Storage(_) => "storage",
        }
    }

    /// Shorthand for [`StoreError::Invalid`].
    pub fn invalid(what: impl Into<String>) -> Self {
        StoreError::Invalid { what: what.into() }
    }
}

/// A storage failure, without the driver's types (providers map their driver errors into this
/// in one place).
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What kind of storage failure this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The storage is unreachable, busy or restarting; retrying later can help.
    Unavailable,
    /// A stored row cannot be read (damaged, or written by a newer version).
    Corrupt,
    /// The storage's schema is missing, older or newer than this build; the message says what
    /// to run.
    Schema,
    /// Anything else that will fail again the same way.
    Other,
}

impl std::fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageErrorKind::Unavailable => "storage unavailable",
            StorageErrorKind::Corrupt => "corrupt row",
            StorageErrorKind::Schema => "schema mismatch",
            StorageErrorKind::Other => "storage error",
        })
    }
}

impl StorageError {
    /// A new storage error.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A transient failure (retry can help).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Unavailable, message)
    }

    /// A damaged or unreadable row.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Corrupt, message)
    }

    /// Attaches the underlying cause (kept as a boxed error, never a driver type in the API).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// Whether a retry can help.
    pub fn is_transient(&self) -> bool {
        self.kind == StorageErrorKind::Unavailable
    }
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        StoreError::Storage(e)
    }
}
