//! The runtime: [`InstanceStore`]. Every rule that is the same for all storage lives here —
//! handle binding, one command per handle, validation, extensions, lock-retry policy, timeouts,
//! lease renewal and owner recovery, background unlocks and event delivery — so providers only
//! implement atomic storage operations ([`crate::PersistenceProvider`]).

mod claims;
mod commands;
mod detector;
mod events;
mod execute;
mod handle;
mod owners;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use events::{InstanceEvent, StoreEvent};
pub use handle::InstanceHandle;

use crate::{
    Command, Extension, InstanceId, InstanceView, OwnerId, PersistenceProvider, PropertyBag,
    SharedClock, StoreError, StoreSettings, SuspensionExtension, Timestamp,
};
use claims::Claim;

/// A store: the host's entry point (SPEC §2). Cheap to clone; all clones share one runtime.
/// When the last clone is dropped (or [`InstanceStore::shutdown`] is called) its background work
/// stops.
#[derive(Debug, Clone)]
pub struct InstanceStore {
    inner: Arc<Inner>,
    _alive: Arc<AliveGuard>,
}

/// Cancels the background work when the last user-facing clone goes away (the tasks hold the
/// inner state, so it cannot be the inner state's own drop).
#[derive(Debug)]
struct AliveGuard(CancellationToken);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    provider: Arc<dyn PersistenceProvider>,
    clock: SharedClock,
    settings: StoreSettings,
    extensions: Vec<Arc<dyn Extension>>,
    machine: String,
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
    /// Poked when the detector must look again: the set of live owners changed (new host types),
    /// or a `TryLoadRunnable` found nothing (the provider's "earliest" answer was the instance
    /// just loaded; the next timer is only known after a fresh look).
    rescan: Notify,
    /// Poked when an owner with a lease shorter than the renewal cycle registers.
    renew_sooner: Notify,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    owners: HashMap<OwnerId, OwnerEntry>,
    default_owner: Option<OwnerId>,
}

/// The runtime's record of one owner it registered.
#[derive(Debug)]
struct OwnerEntry {
    host_type: Option<String>,
    metadata: PropertyBag,
    lease: Duration,
    /// As last confirmed by the provider.
    lease_expires_at: Timestamp,
    /// Lost (lease ended without renewal) or deleted: every later command answers `OwnerLost`.
    lost: bool,
    /// A `DeleteOwner` is under way: the lease ending is deliberate, not a loss.
    deleting: bool,
    /// Live locks of this owner, by instance: which handle holds each, or that it is being
    /// released in the background.
    claims: HashMap<InstanceId, Claim>,
    /// The `HasRunnableWorkflow` signal and loss, watched by waiting handles.
    signal: watch::Sender<OwnerSignal>,
}

/// What waiting handles of an owner watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OwnerSignal {
    runnable: bool,
    /// Bumped each time the detector signals, so a `TryLoadRunnable` that found nothing only
    /// resets a signal it has seen (a newer one must survive).
    seq: u64,
    lost: bool,
}

/// Builds an [`InstanceStore`]: settings apart from components (provider, clock, extensions).
#[derive(Debug)]
pub struct InstanceStoreBuilder {
    provider: Arc<dyn PersistenceProvider>,
    settings: StoreSettings,
    extensions: Vec<Arc<dyn Extension>>,
    machine: Option<String>,
}

impl InstanceStoreBuilder {
    /// The store's settings.
    pub fn settings(mut self, settings: StoreSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Registers an extension (after the built-in ones).
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// The machine name recorded with owners (default: this host's name).
    pub fn machine(mut self, machine: impl Into<String>) -> Self {
        self.machine = Some(machine.into());
        self
    }

    /// Builds the store and starts its background work (lease renewal, runnable detection).
    /// Must be called inside a tokio runtime.
    pub fn build(self) -> Result<InstanceStore, StoreError> {
        self.settings.validate()?;
        let mut extensions: Vec<Arc<dyn Extension>> = Vec::new();
        if self.settings.suspension_extension {
            extensions.push(Arc::new(SuspensionExtension));
        }
        extensions.extend(self.extensions);
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            clock: self.provider.clock(),
            provider: self.provider,
            settings: self.settings,
            extensions,
            machine: self
                .machine
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            state: Mutex::new(State::default()),
            events: broadcast::channel(64).0,
            rescan: Notify::new(),
            renew_sooner: Notify::new(),
            shutdown: shutdown.clone(),
            tasks: Mutex::new(Vec::new()),
        });
        // Nothing to renew at start: the first pass is one interval in.
        let first_renewal = inner.clock.now().plus(inner.settings.renew_every);
        let renewals = tokio::spawn(owners::run_renewals(inner.clone(), first_renewal));
        let detector = tokio::spawn(detector::run(inner.clone()));
        inner.tasks().extend([renewals, detector]);
        Ok(InstanceStore {
            inner,
            _alive: Arc::new(AliveGuard(shutdown)),
        })
    }
}

impl InstanceStore {
    /// A builder over a provider.
    pub fn builder(provider: Arc<dyn PersistenceProvider>) -> InstanceStoreBuilder {
        InstanceStoreBuilder {
            provider,
            settings: StoreSettings::default(),
            extensions: Vec::new(),
            machine: None,
        }
    }

    /// Opens a store by URL with default settings: `memory:` here; `sqlite://PATH` and
    /// `postgres://…` need their provider crates, and say so.
    pub async fn open(url: &str) -> Result<InstanceStore, StoreError> {
        Self::open_with(url, StoreSettings::default()).await
    }

    /// Opens a store by URL with the given settings.
    pub async fn open_with(
        url: &str,
        settings: StoreSettings,
    ) -> Result<InstanceStore, StoreError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "memory" => Self::builder(crate::MemoryProvider::new()).settings(settings).build(),
            "sqlite" | "postgres" | "postgresql" => Err(StoreError::invalid(format!(
                "store URL '{url}' needs the {scheme} provider, which is not linked into this program; \
                 add the instore-{} crate and open the store through it",
                if scheme == "sqlite" { "sqlite" } else { "postgres" }
            ))),
            _ => Err(StoreError::invalid(format!(
                "store URL '{url}' has an unknown scheme; use memory:, sqlite://PATH or postgres://USER@HOST/DB"
            ))),
        }
    }

    /// A new handle, bound to the store's default owner if it has one (the first owner created,
    /// or the one set with [`InstanceStore::set_default_owner`]).
    pub fn create_handle(&self) -> InstanceHandle {
        let owner = self.inner.state().default_owner;
        InstanceHandle::new(Arc::downgrade(&self.inner), owner, None)
    }

    /// A new handle bound to the given owner and/or instance.
    pub fn create_handle_for(
        &self,
        owner: Option<OwnerId>,
        instance: Option<InstanceId>,
    ) -> InstanceHandle {
        InstanceHandle::new(Arc::downgrade(&self.inner), owner, instance)
    }

    /// Executes a command against a handle (SPEC §6). Atomic; fails with
    /// [`StoreError::Timeout`] (freeing the handle) if it does not finish within `timeout` on the
    /// store's clock.
    pub async fn execute(
        &self,
        handle: &InstanceHandle,
        command: impl Into<Command>,
        timeout: Duration,
    ) -> Result<InstanceView, StoreError> {
        self.inner.execute(handle, command.into(), timeout).await
    }

    /// Waits for events bound to the handle (SPEC §8): returns as soon as one is signalled, or
    /// an empty list when `timeout` passes or the handle is freed. The handle's owner must have a
    /// host type. One wait per handle at a time.
    pub async fn wait_for_events(
        &self,
        handle: &InstanceHandle,
        timeout: Duration,
    ) -> Result<Vec<InstanceEvent>, StoreError> {
        self.inner.wait_for_events(handle, timeout).await
    }

    /// The owner new handles are bound to.
    pub fn default_owner(&self) -> Option<OwnerId> {
        self.inner.state().default_owner
    }

    /// Sets the owner new handles are bound to.
    pub fn set_default_owner(&self, owner: Option<OwnerId>) {
        self.inner.state().default_owner = owner;
    }

    /// Store-level events (owner lost, owner recovered).
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    /// Renews every live owner's lease now (the background task does so every `renew_every`),
    /// and marks owners whose lease has ended as lost.
    pub async fn renew_leases(&self) {
        owners::renew_all(&self.inner).await;
    }

    /// The store's clock.
    pub fn clock(&self) -> SharedClock {
        self.inner.clock.clone()
    }

    /// The store's settings.
    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn PersistenceProvider> {
        &self.inner.provider
    }

    /// The machine name recorded with this store's owners.
    pub fn machine(&self) -> &str {
        &self.inner.machine
    }

    /// Stops the background work (renewals, detection, background unlocks) and waits for it.
    /// Owners are not deleted: to other hosts this looks like a crash, and their instances are
    /// taken over once their leases end. Delete owners first for a clean stop.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks());
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // Poisoning needs a panic inside a short critical section over plain maps; the maps
        // stay usable, so carry on rather than take the whole store down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns background work tied to the store's lifetime.
    fn spawn(self: &Arc<Self>, work: impl std::future::Future<Output = ()> + Send + 'static) {
        if self.shutdown.is_cancelled() {
            return;
        }
        // A handle may be dropped after the runtime is gone; then there is nothing left to run
        // the work on, and the owner's lease ending releases its locks anyway.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shutdown = self.shutdown.clone();
        let task = runtime.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = work => {}
            }
        });
        let mut tasks = self.tasks();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Sleeps on the store's clock; false if the store shut down meanwhile.
    async fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(self.clock.now().plus(d)).await
    }

    /// Sleeps until `deadline` on the store's clock; false if the store shut down meanwhile.
    async fn sleep_until(&self, deadline: Timestamp) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = self.clock.sleep_until(deadline) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_open_a_store() {
        let store = InstanceStore::open("memory:").await.unwrap();
        assert!(store.default_owner().is_none());
    }

    #[tokio::test]
    async fn urls_of_providers_not_linked_say_which_crate_to_add() {
        let err = InstanceStore::open("sqlite://instore.db")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("instore-sqlite") && err.contains("not linked"),
            "{err}"
        );
        let err = InstanceStore::open("postgres://postgres@127.0.0.1/test")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("instore-postgres"), "{err}");
    }

    #[tokio::test]
    async fn unknown_url_schemes_list_the_known_ones() {
        let err = InstanceStore::open("redis://x")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown scheme") && err.contains("memory:"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn invalid_settings_are_refused_at_build() {
        let settings = StoreSettings {
            lease: Duration::from_millis(1),
            ..StoreSettings::default()
        };
        let err = InstanceStore::builder(crate::MemoryProvider::new())
            .settings(settings)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("'lease'"), "{err}");
    }

    #[test]
    fn dropping_a_handle_outside_a_runtime_does_not_panic() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (store, handle) = rt.block_on(async {
            let store = InstanceStore::open("memory:").await.unwrap();
            let handle = store.create_handle();
            (store, handle)
        });
        drop(rt);
        drop(handle);
        drop(store);
    }
}
