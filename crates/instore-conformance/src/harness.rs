//! What every case gets: a fresh provider judged by a manual clock, stores ("hosts") over it
//! with per-store fault injection, and small helpers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    Activatable, CreateOwner, Extension, InstanceHandle, InstanceId, InstanceSnapshot,
    InstanceStore, LeaseState, LoadGuards, LoadRequest, ManualClock, MemoryProvider, NewOwner,
    OwnerId, OwnerInfo, PersistenceProvider, SaveRequest, SharedClock, StoreError, StoreSettings,
    Timestamp, WakeUps,
};
use tokio::sync::watch;

/// The command timeout cases use unless they test timeouts (on the manual clock, so it only
/// passes if a case moves time).
pub const T: Duration = Duration::from_secs(30);

/// A provider under test, with the hooks the suite needs beyond the public trait.
#[async_trait::async_trait]
pub trait TestProvider: PersistenceProvider {
    /// Damages an instance's stored data so that it no longer decodes.
    async fn corrupt_instance_data(&self, instance: InstanceId);
}

#[async_trait::async_trait]
impl TestProvider for MemoryProvider {
    async fn corrupt_instance_data(&self, instance: InstanceId) {
        assert!(
            MemoryProvider::corrupt_instance_data(self, instance),
            "no instance {instance} to corrupt"
        );
    }
}

/// Adapts any provider to [`TestProvider`] with closures for the hooks, so a provider crate's
/// test file can use the suite without implementing a foreign trait for a foreign type:
///
/// ```ignore
/// async fn provider(clock: ManualClock) -> Arc<dyn TestProvider> {
///     let p = MyProvider::open_temp(clock).await.unwrap();
///     let hooks = p.clone();
///     WithHooks::new(p, move |id| { let hooks = hooks.clone(); Box::pin(async move { hooks.damage(id).await }) })
/// }
/// ```
pub struct WithHooks {
    provider: Arc<dyn PersistenceProvider>,
    corrupt: Box<dyn Fn(InstanceId) -> instore::BoxFuture<()> + Send + Sync>,
}

impl WithHooks {
    /// Wraps `provider`; `corrupt` damages an instance's stored data so it no longer decodes.
    pub fn new(
        provider: Arc<dyn PersistenceProvider>,
        corrupt: impl Fn(InstanceId) -> instore::BoxFuture<()> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            corrupt: Box::new(corrupt),
        })
    }
}

impl std::fmt::Debug for WithHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithHooks")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TestProvider for WithHooks {
    async fn corrupt_instance_data(&self, instance: InstanceId) {
        (self.corrupt)(instance).await
    }
}

#[async_trait::async_trait]
impl PersistenceProvider for WithHooks {
    fn clock(&self) -> SharedClock {
        self.provider.clock()
    }
    fn wake_ups(&self) -> WakeUps {
        self.provider.wake_ups()
    }
    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        self.provider.create_owner(owner).await
    }
    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        self.provider.renew_lease(owner, lease).await
    }
    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        self.provider.delete_owner(owner).await
    }
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.provider.load(owner, request).await
    }
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.provider.save(owner, request).await
    }
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        self.provider.unlock(owner, instance).await
    }
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        host_type: &str,
        guards: LoadGuards,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.provider
            .try_load_runnable(owner, host_type, guards)
            .await
    }
    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        self.provider.next_runnable(host_type).await
    }
    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        self.provider.activatable().await
    }
    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.provider.owners().await
    }
}

/// One case's world: a fresh, empty provider and the manual clock it is judged by.
pub struct Env {
    /// The clock; move time with `env.clock.advance(..)`.
    pub clock: ManualClock,
    /// The provider under test.
    pub provider: Arc<dyn TestProvider>,
}

impl Env {
    /// Builds the world with a provider factory.
    pub async fn new<F, Fut>(make: F) -> Env
    where
        F: FnOnce(ManualClock) -> Fut,
        Fut: Future<Output = Arc<dyn TestProvider>>,
    {
        let clock = ManualClock::starting_now();
        let provider = make(clock.clone()).await;
        Env { clock, provider }
    }

    /// The settings cases start from: the product defaults.
    pub fn settings(&self) -> StoreSettings {
        StoreSettings::default()
    }

    /// A store (think: a host process) over the provider, with default settings.
    pub fn store(&self) -> InstanceStore {
        self.store_with(self.settings(), Vec::new()).0
    }

    /// A store with settings and extensions, and the fault switches of its provider wrapper.
    pub fn store_with(
        &self,
        settings: StoreSettings,
        extensions: Vec<Arc<dyn Extension>>,
    ) -> (InstanceStore, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let provider = Arc::new(FaultyProvider {
            inner: self.provider.clone(),
            faults: faults.clone(),
        });
        let mut builder = InstanceStore::builder(provider).settings(settings);
        for e in extensions {
            builder = builder.extension(e);
        }
        (builder.build().expect("test settings are valid"), faults)
    }

    /// Registers an owner on a new handle of `store` and returns its id (the handle stays
    /// alive inside the store as its owner registration; new handles bind to the first owner).
    pub async fn owner(&self, store: &InstanceStore, host_type: Option<&str>) -> OwnerId {
        self.owner_with(
            store,
            CreateOwner {
                host_type: host_type.map(str::to_owned),
                ..CreateOwner::default()
            },
        )
        .await
    }

    /// Registers an owner as `command` says.
    pub async fn owner_with(&self, store: &InstanceStore, command: CreateOwner) -> OwnerId {
        let handle = store.create_handle_for(None, None);
        let view = store
            .execute(&handle, command, T)
            .await
            .expect("CreateOwner succeeds");
        // Keep the owner registered: dropping the handle only frees the handle.
        view.owner.expect("CreateOwner binds an owner")
    }

    /// A handle of `owner` for `instance` on `store`.
    pub fn handle(
        &self,
        store: &InstanceStore,
        owner: OwnerId,
        instance: Option<InstanceId>,
    ) -> InstanceHandle {
        store.create_handle_for(Some(owner), instance)
    }

    /// The provider's current time.
    pub fn now(&self) -> Timestamp {
        use instore::Clock;
        self.clock.now()
    }
}

/// Fault switches of one store's provider wrapper.
#[derive(Debug, Default)]
pub struct Faults {
    /// Make every lease renewal fail with a transient storage error.
    pub fail_renewals: AtomicBool,
    hold: Mutex<Option<watch::Sender<bool>>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

/// Locks a test-harness mutex; a poisoned one (a case panicked) is still usable plain data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faults {
    /// From now on, `load`, `save` and `unlock` calls wait (before reaching the provider) until
    /// [`Faults::release`].
    pub fn hold(&self) {
        *lock(&self.hold) = Some(watch::Sender::new(true));
    }

    /// Lets held calls through.
    pub fn release(&self) {
        if let Some(tx) = lock(&self.hold).take() {
            tx.send_replace(false);
        }
    }

    /// How many times the provider method `name` was called through this store.
    pub fn calls(&self, name: &str) -> usize {
        lock(&self.calls).get(name).copied().unwrap_or(0)
    }

    fn count(&self, name: &'static str) {
        *lock(&self.calls).entry(name).or_default() += 1;
    }

    async fn gate(&self) {
        let rx = lock(&self.hold).as_ref().map(|tx| tx.subscribe());
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|held| !held).await;
        }
    }
}

/// Wraps the provider under test with [`Faults`].
#[derive(Debug)]
pub struct FaultyProvider {
    inner: Arc<dyn TestProvider>,
    faults: Arc<Faults>,
}

#[async_trait::async_trait]
impl PersistenceProvider for FaultyProvider {
    fn clock(&self) -> SharedClock {
        self.inner.clock()
    }
    fn wake_ups(&self) -> WakeUps {
        self.inner.wake_ups()
    }
    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        self.faults.count("create_owner");
        self.inner.create_owner(owner).await
    }
    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        self.faults.count("renew_lease");
        if self.faults.fail_renewals.load(Ordering::SeqCst) {
            return Err(StoreError::Storage(instore::StorageError::unavailable(
                "injected renewal failure",
            )));
        }
        self.inner.renew_lease(owner, lease).await
    }
    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        self.faults.count("delete_owner");
        self.inner.delete_owner(owner).await
    }
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.faults.count("load");
        self.faults.gate().await;
        self.inner.load(owner, request).await
    }
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.faults.count("save");
        self.faults.gate().await;
        self.inner.save(owner, request).await
    }
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        self.faults.count("unlock");
        self.faults.gate().await;
        self.inner.unlock(owner, instance).await
    }
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        host_type: &str,
        guards: LoadGuards,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.faults.count("try_load_runnable");
        self.inner.try_load_runnable(owner, host_type, guards).await
    }
    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        self.faults.count("next_runnable");
        self.inner.next_runnable(host_type).await
    }
    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        self.faults.count("activatable");
        self.inner.activatable().await
    }
    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.inner.owners().await
    }
}

/// Waits (in real time, bounded) until `cond` holds, yielding to background tasks in between.
/// For effects of background work (a renewal, a background unlock) after the clock moved;
/// never for time itself.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// As [`eventually`], for an async condition.
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}
