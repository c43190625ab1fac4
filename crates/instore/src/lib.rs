//! # instore — a durable instance store for long-running workflows
//!
//! Hosts persist workflow instances through an [`InstanceStore`]: they register as instance
//! owners with a lease, load and save instances under exclusive locks, find instances by keys,
//! and are woken when an instance becomes runnable. Storage is pluggable through
//! [`PersistenceProvider`]; this crate ships the in-memory provider, [`MemoryProvider`].
//!
//! The four steps of a host (SPEC §2):
//!
//! ```
//! use std::time::Duration;
//! use instore::{bag, CreateOwner, InstanceStore, KeyId, LoadByKey, Save, StoreError, Uuid};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let timeout = Duration::from_secs(5);
//! // 1. Obtain a store from a provider (by URL here).
//! let store = InstanceStore::open("memory:").await?;
//!
//! // 2. Create a handle, and register this host as an instance owner.
//! let owner = store.create_handle();
//! store.execute(&owner, CreateOwner::host_type("orders-service"), timeout).await?;
//!
//! // 3. Execute commands: find (or create) the instance of order 42 by its key, and save it.
//! let order_key = KeyId::derive(Uuid::nil(), "order-42");
//! let handle = store.create_handle(); // bound to the store's default owner
//! let view = store.execute(&handle, LoadByKey::or_create(order_key), timeout).await?;
//! store.execute(&handle, Save::data(bag([("orders:total", 99i64)])).and_unlock(), timeout).await?;
//!
//! // 4. Read the view: the instance, its lock epoch, its keys.
//! assert_eq!(view.lock_version, Some(1));
//! assert!(view.keys.contains_key(&order_key));
//! # Ok(())
//! # }
//! ```

mod codes;
mod command;
mod control;
pub mod encoding;
mod error;
mod extension;
mod ids;
mod memory;
mod provider;
mod query;
mod settings;
mod store;
mod time;
mod validate;
mod value;
mod view;

pub use command::{
    Command, CreateOwner, CustomCommand, ExceptionInfo, ExecutionStatus, Load, LoadByKey, NewKey,
    Save, SuspendChange,
};
pub use control::{
    handover, handover_metadata, CommandFailure, ControlCommand, ControlProvider, QueueEntry,
    QueueSettings, QueuedCommand,
};
pub use encoding::{EncodedBag, Encoding, EncodingSettings};
pub use error::{StorageError, StorageErrorKind, StoreError};
pub use extension::{CommandContext, Extension, SuspensionExtension};
pub use ids::{InstanceId, KeyId, OwnerId};
pub use memory::MemoryProvider;
pub use provider::{
    LeaseState, LoadGuards, LoadRequest, LoadTarget, NewOwner, OwnerInfo, PersistenceProvider,
    Providers, RunnableRequest, SaveRequest, SaveRules, WakeUps,
};
pub use query::{
    promote, promoted_text, BlockedOn, Condition, Cursor, ErrorLogEntry, GroupBy, GroupCount,
    InstanceFilter, InstanceInfo, InstanceStatus, Page, PageRequest, PendingCommand, QueryProvider,
    RunnableBacklog, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
pub use settings::{CompletionAction, LockRetry, StoreSettings};
pub use store::{InstanceEvent, InstanceHandle, InstanceStore, InstanceStoreBuilder, StoreEvent};
pub use time::{BoxFuture, Clock, ManualClock, SharedClock, SystemClock, Timestamp};
pub use value::{
    apply_changes, bag, readable, validate_bag, validate_changes, BagKind, InstanceValue,
    MetadataChange, MetadataChanges, PropertyBag, Value, ValueOptions,
};
pub use view::{
    Activatable, InstanceSnapshot, InstanceState, InstanceView, KeyState, KeyView, Suspension,
};

/// Re-exported so hosts can derive keys without naming the `uuid` crate version.
pub use uuid::Uuid;
