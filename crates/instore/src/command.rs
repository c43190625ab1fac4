//! The commands a host executes against a handle (SPEC §6).

use std::time::Duration;

use crate::{InstanceId, KeyId, MetadataChanges, PropertyBag, Timestamp};

/// A request executed against a handle with [`crate::InstanceStore::execute`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Register the handle's host as an instance owner (SPEC §4).
    CreateOwner(CreateOwner),
    /// Expire the handle's owner now and free the handle (SPEC §4).
    DeleteOwner,
    /// Load (and lock) the handle's instance (SPEC §6.2).
    Load(Load),
    /// Find an instance by key, load and lock it, or create it (SPEC §6.3).
    LoadByKey(LoadByKey),
    /// Persist the handle's instance (SPEC §6.4).
    Save(Save),
    /// Load the runnable instance of the owner's host type that has waited longest (SPEC §6.5).
    TryLoadRunnable,
    /// Host types with runnable instances but no live owner (SPEC §6.6).
    QueryActivatable,
    /// A command provided by an extension.
    Custom(CustomCommand),
}

impl Command {
    /// The command's name, for messages and tracing.
    pub fn name(&self) -> &str {
        match self {
            Command::CreateOwner(_) => "CreateOwner",
            Command::DeleteOwner => "DeleteOwner",
            Command::Load(_) => "Load",
            Command::LoadByKey(_) => "LoadByKey",
            Command::Save(_) => "Save",
            Command::TryLoadRunnable => "TryLoadRunnable",
            Command::QueryActivatable => "QueryActivatable",
            Command::Custom(c) => &c.name,
        }
    }
}

/// `CreateOwner { host_type, metadata, lease }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOwner {
    /// The kind of host (e.g. `orders-service`). With a host type, the handle is bound to the
    /// `HasRunnableWorkflow` event.
    pub host_type: Option<String>,
    /// Metadata shown to other owners that find an instance locked by this one.
    pub metadata: PropertyBag,
    /// The lease; `None` takes the store's setting.
    pub lease: Option<Duration>,
}

impl CreateOwner {
    /// An owner of the given host type.
    pub fn host_type(host_type: impl Into<String>) -> Self {
        Self {
            host_type: Some(host_type.into()),
            ..Self::default()
        }
    }
}

/// `Load { accept_uninitialized }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Create the instance (uninitialized, locked) if it does not exist, and accept an
    /// uninitialized one.
    pub accept_uninitialized: bool,
    /// Load even if suspended (the control path). Only matters with the suspension extension.
    pub allow_suspended: bool,
}

/// A key to associate, with its (write-once) metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// The key.
    pub key: KeyId,
    /// Metadata stored with the key.
    pub metadata: PropertyBag,
}

impl From<KeyId> for NewKey {
    fn from(key: KeyId) -> Self {
        NewKey {
            key,
            metadata: PropertyBag::new(),
        }
    }
}

/// `LoadByKey { key, accept_uninitialized, create_with_id, keys_to_associate }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadByKey {
    /// The key to look up; never nil.
    pub key: KeyId,
    /// Create a new instance for an unknown key (and accept an uninitialized one).
    pub accept_uninitialized: bool,
    /// The id of the instance to create for an unknown key (needs `accept_uninitialized`).
    pub create_with_id: Option<InstanceId>,
    /// Further keys to associate with the instance. Must not contain `key` unless
    /// `create_with_id` is given.
    pub keys_to_associate: Vec<NewKey>,
    /// Load even if suspended. Only matters with the suspension extension.
    pub allow_suspended: bool,
}

impl LoadByKey {
    /// Load by `key`, failing if it is unknown.
    pub fn new(key: KeyId) -> Self {
        Self {
            key,
            accept_uninitialized: false,
            create_with_id: None,
            keys_to_associate: Vec::new(),
            allow_suspended: false,
        }
    }

    /// Load by `key`, creating a new instance if it is unknown.
    pub fn or_create(key: KeyId) -> Self {
        Self {
            accept_uninitialized: true,
            ..Self::new(key)
        }
    }
}

/// The execution status a host reports (projected for operators and runnable detection).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum ExecutionStatus {
    /// Running; an unlocked `Executing` instance is runnable (its host died mid-run, or it was
    /// released to be continued elsewhere).
    Executing,
    /// Waiting (for a timer or a bookmark).
    #[default]
    Idle,
    /// Closed normally.
    Closed,
    /// Ended with an unhandled fault.
    Faulted,
    /// Canceled.
    Canceled,
    /// Terminated by an operator.
    Terminated,
}

/// An exception recorded with a suspension (or a fault).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExceptionInfo {
    /// The exception's type name.
    pub name: String,
    /// Its message.
    pub message: String,
}

/// What a save does to suspension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SuspendChange {
    /// Leave as is.
    #[default]
    Unchanged,
    /// Suspend, with a reason and optionally the exception that caused it.
    Suspend {
        /// Why.
        reason: String,
        /// The exception, if one caused it.
        exception: Option<ExceptionInfo>,
    },
    /// Clear suspension.
    Unsuspend,
}

/// `Save { data, metadata_changes, keys_*, timer, status, bookmarks, suspend, complete, unlock }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Save {
    /// Replaces the instance data (and makes it `Initialized`). `None` is a metadata-only save:
    /// data, timer, status and bookmarks stay as they are.
    pub data: Option<PropertyBag>,
    /// Applied to the instance metadata, in order.
    pub metadata_changes: MetadataChanges,
    /// Keys to associate (first).
    pub keys_to_associate: Vec<NewKey>,
    /// Keys to complete (second).
    pub keys_to_complete: Vec<KeyId>,
    /// Keys to free (last).
    pub keys_to_free: Vec<KeyId>,
    /// The next durable-timer due time, or none. Written only with `data`.
    pub timer: Option<Timestamp>,
    /// The execution status. Written only with `data`.
    pub status: ExecutionStatus,
    /// Names of the bookmarks the instance waits on. Written only with `data`.
    pub bookmarks: Vec<String>,
    /// Suspension change (applies with or without data).
    pub suspend: SuspendChange,
    /// Mark the instance completed (needs `unlock`); completes every still-associated key.
    pub complete: bool,
    /// Release the lock and free the handle.
    pub unlock: bool,
}

impl Save {
    /// A save carrying `data`.
    pub fn data(data: PropertyBag) -> Self {
        Self {
            data: Some(data),
            ..Self::default()
        }
    }

    /// Also release the lock.
    pub fn and_unlock(mut self) -> Self {
        self.unlock = true;
        self
    }

    /// Also complete the instance (and release the lock).
    pub fn and_complete(mut self) -> Self {
        self.complete = true;
        self.unlock = true;
        self
    }

    /// With a durable timer due at `at`.
    pub fn with_timer(mut self, at: Timestamp) -> Self {
        self.timer = Some(at);
        self
    }

    /// With an execution status.
    pub fn with_status(mut self, status: ExecutionStatus) -> Self {
        self.status = status;
        self
    }
}

/// A command provided by an extension.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomCommand {
    /// The command's name, unique among the store's extensions.
    pub name: String,
    /// Its arguments.
    pub args: PropertyBag,
}

macro_rules! into_command {
    ($($t:ident),*) => {
        $(impl From<$t> for Command {
            fn from(c: $t) -> Self {
                Command::$t(c)
            }
        })*
    };
}
into_command!(CreateOwner, Load, LoadByKey, Save);

impl From<CustomCommand> for Command {
    fn from(c: CustomCommand) -> Self {
        Command::Custom(c)
    }
}
