//! The storage side: what a persistence provider implements (DESIGN "The runtime / provider split").
//!
//! The runtime ([`crate::InstanceStore`]) keeps every rule that is the same for all storage:
//! handles, one command per handle, validation, extensions, retries, timeouts, lease renewal and
//! owner recovery, background unlocks and event delivery. A provider implements the storage
//! operations below. **Each method is one atomic storage transaction**: all of its effects or
//! none. Times are judged by [`PersistenceProvider::clock`]. Errors are [`StoreError`] values; a
//! provider maps its driver's errors into [`crate::StorageError`] in one place.
//!
//! `docs/writing-a-provider.md` walks through writing one; `instore-conformance` proves it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use tokio::sync::watch;

use crate::{
    Activatable, CompletionAction, EncodingSettings, InstanceId, InstanceSnapshot, KeyId, NewKey,
    OwnerId, PropertyBag, Save, SharedClock, StoreError, Timestamp, Value,
};

/// What to register with [`PersistenceProvider::create_owner`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewOwner {
    /// The kind of host, if any.
    pub host_type: Option<String>,
    /// The owner's metadata (validated).
    pub metadata: PropertyBag,
    /// The lease: `lease_expires_at = now + lease`.
    pub lease: Duration,
    /// The machine the host runs on.
    pub machine: String,
}

impl NewOwner {
    /// The owner this request registers at `now`: a new id, `lease_expires_at = now + lease`.
    /// What every provider's `create_owner` stores.
    pub fn register(self, now: Timestamp) -> OwnerInfo {
        OwnerInfo {
            id: OwnerId::new(),
            host_type: self.host_type,
            metadata: self.metadata,
            machine: self.machine,
            created_at: now,
            lease_expires_at: now.plus(self.lease),
        }
    }
}

/// An owner as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerInfo {
    /// Its id.
    pub id: OwnerId,
    /// Its host type.
    pub host_type: Option<String>,
    /// Its metadata.
    pub metadata: PropertyBag,
    /// Its machine.
    pub machine: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When its lease ends (or ended).
    pub lease_expires_at: Timestamp,
}

/// The outcome of a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; the lease now ends at this instant.
    Renewed {
        /// The new end of the lease.
        expires_at: Timestamp,
    },
    /// The lease had already ended: the owner is lost (others may hold its instances now).
    Expired,
    /// No such owner (deleted, or cleaned up after expiring).
    Missing,
}

/// Conditions the provider checks inside a load's transaction, set by extensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadGuards {
    /// Fail with `InstanceSuspended` instead of loading a suspended instance (suspension
    /// extension).
    pub reject_suspended: bool,
}

/// Which instance a load is for.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadTarget {
    /// By id (SPEC §6.2).
    Id {
        /// The instance.
        instance: InstanceId,
        /// Create it if missing; accept it uninitialized.
        accept_uninitialized: bool,
    },
    /// By key (SPEC §6.3). The runtime has validated the argument rules.
    Key {
        /// The key.
        key: KeyId,
        /// Create an instance for an unknown key; accept it uninitialized.
        accept_uninitialized: bool,
        /// Id for the instance to create.
        create_with_id: Option<InstanceId>,
        /// Further keys to associate.
        keys_to_associate: Vec<NewKey>,
    },
}

/// A load request.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRequest {
    /// Which instance.
    pub target: LoadTarget,
    /// `Some(version)` when the handle already holds the lock: the load only re-reads, and fails
    /// with `LockLost` unless the caller's lease is alive and it still holds the lock at exactly
    /// this version.
    pub held_version: Option<u64>,
    /// Instances the caller's owner holds through *other* live handles: finding the target among
    /// them is `HandleConflict`.
    pub busy: Vec<InstanceId>,
    /// Extension guards.
    pub guards: LoadGuards,
}

/// Store rules a save must respect (from the store's settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaveRules {
    /// Maximum logical encoded size of data + metadata ([`crate::encoding::encode_within`]).
    pub max_payload_bytes: usize,
    /// How to encode.
    pub encoding: EncodingSettings,
    /// What completing does.
    pub completion: CompletionAction,
}

/// A save request.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveRequest {
    /// The instance.
    pub instance: InstanceId,
    /// As in [`LoadRequest::held_version`]; `None` means the save acquires the lock first
    /// (creating the instance if it does not exist).
    pub held_version: Option<u64>,
    /// As in [`LoadRequest::busy`].
    pub busy: Vec<InstanceId>,
    /// The validated command.
    pub save: Save,
    /// Store rules.
    pub rules: SaveRules,
    /// With data: the instance's promoted values, replacing all it had (computed by the runtime
    /// with [`crate::promote`]). `None`: leave them.
    pub promoted: Option<BTreeMap<String, Value>>,
}

/// A `TryLoadRunnable` request.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnableRequest {
    /// Only instances of this host type.
    pub host_type: String,
    /// Extension guards.
    pub guards: LoadGuards,
    /// Instances other handles of the caller's owner hold or are acquiring: never taken, even if
    /// runnable (the runtime's bookkeeping of who holds what must stay true).
    pub skip: Vec<InstanceId>,
}

/// Push notifications from a provider: the counter moves whenever something may have become
/// runnable (a save or unlock that left an `Executing` or timed instance unlocked, an owner
/// deleted, ...). Watchers re-ask [`PersistenceProvider::next_runnable`].
pub type WakeUps = watch::Receiver<u64>;

/// A persistence provider: storage-level operations, each one atomic transaction.
///
/// # Locking rules every acquiring operation applies (SPEC §5)
///
/// Acquiring `instance` for `owner` (a load without `held_version`, a save without it):
/// - completed → `InstanceComplete`;
/// - unlocked, or locked by an owner that no longer exists or whose lease has ended (and is not
///   the caller) → the caller takes it; `lock_version` increases by one if the previous locking
///   owner was another owner, and stays if it was the caller;
/// - locked by the caller: if the instance is in `busy` → `HandleConflict`, else the caller
///   reclaims it at the same `lock_version`;
/// - locked by another live owner → `InstanceLocked` with that owner's metadata.
///
/// The caller's own lease must be alive, else `OwnerLost`. Operations with `held_version` check
/// instead that the caller's lease is alive and it holds the lock at exactly that version, else
/// `LockLost`.
#[async_trait::async_trait]
pub trait PersistenceProvider: Debug + Send + Sync + 'static {
    /// The clock this storage judges leases and timers by.
    fn clock(&self) -> SharedClock;

    /// Push notifications (see [`WakeUps`]); each call subscribes anew.
    fn wake_ups(&self) -> WakeUps;

    /// Registers an owner with a new id and `lease_expires_at = now + lease`. May clean up
    /// expired owners that hold no locks.
    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError>;

    /// Extends the owner's lease to `now + lease` if it has not ended. An ended lease is never
    /// extended ([`LeaseState::Expired`]): others may already hold its instances.
    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError>;

    /// Ends the owner's lease now, so its instances are takeable at once; deletes the owner if it
    /// holds no locks (otherwise it is cleaned up once it holds none). Missing owner: `Ok`.
    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError>;

    /// Loads (and, without `held_version`, acquires) an instance. See the trait docs for locking
    /// and SPEC §6.2–6.3 for the rest: creation with `accept_uninitialized`, `InstanceNotReady`,
    /// `InstanceComplete`, key states (`InstanceKeyNotReady`, `InstanceKeyComplete`,
    /// `InstanceCollision`, `InstanceKeyCollision`), exactly one instance for racing creators of
    /// one new key, and the guards. Loading removes the instance from the runnable set.
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError>;

    /// Saves an instance (SPEC §6.4): effects in order (data, metadata, keys associated →
    /// completed → freed, projected fields, suspension, completion), `PayloadTooLarge` checked on
    /// the result before anything is written, then unlock if asked (entering the runnable set if
    /// not suspended and `Executing` or timed). The snapshot's `locked` says whether the caller
    /// still holds the lock.
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError>;

    /// Releases the caller's lock on the instance if it still holds it (any version); otherwise
    /// does nothing. The instance may enter the runnable set, as after a save with `unlock`.
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError>;

    /// Acquires and loads the runnable instance of `request.host_type` that has been runnable
    /// longest (SPEC §6.5, §8), leaving out `request.skip`. An instance that cannot be loaded (for instance its row does not decode)
    /// is removed from the runnable set and the next one is tried. `Ok(None)` if none.
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError>;

    /// When the next instance of `host_type` becomes runnable: `Some(t <= now)` if one is
    /// runnable now, `Some(t > now)` for the earliest future moment (a timer falling due, a
    /// holder's lease ending), `None` if nothing is scheduled. Reads only.
    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError>;

    /// Host types with runnable instances and no owner of that host type whose lease is alive.
    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError>;

    /// Every stored owner (live or expired but not yet cleaned up).
    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError>;
}

/// The three sides of one store over the same storage (SPEC §1): persistence, query, control.
/// What tools (CLI, server, management service) open; a provider crate that implements all three
/// traits on one type builds it with [`Providers::of`].
#[derive(Debug, Clone)]
pub struct Providers {
    /// Hosts' side.
    pub persistence: std::sync::Arc<dyn PersistenceProvider>,
    /// Operators' read side.
    pub query: std::sync::Arc<dyn crate::QueryProvider>,
    /// The control queue.
    pub control: std::sync::Arc<dyn crate::ControlProvider>,
}

impl Providers {
    /// All three sides from one provider.
    pub fn of<P>(provider: std::sync::Arc<P>) -> Self
    where
        P: PersistenceProvider + crate::QueryProvider + crate::ControlProvider,
    {
        Self {
            persistence: provider.clone(),
            query: provider.clone(),
            control: provider,
        }
    }
}
