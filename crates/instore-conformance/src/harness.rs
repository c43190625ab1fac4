//! What every case gets: a fresh provider judged by a manual clock, stores ("hosts") over it
//! with per-store fault injection ([`Faults`]), and the small helpers the cases share:
//!
//! - assertions: [`assert_err!`](crate::assert_err);
//! - commands: on a fresh handle ([`run`], [`ok`], [`load_as`], [`try_load`],
//!   [`try_load_runnable`]), on a given one ([`ok_on`]), in a task ([`spawn`], [`finish`]);
//! - fixtures: [`create`], [`data`], [`set`], [`activatable`], [`executing`], [`lock_new`],
//!   [`other_host`];
//! - waiting: [`settle`], [`eventually`], [`eventually_async`].

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, Activatable, Command, CreateOwner, ExecutionStatus, Extension, InstanceHandle, InstanceId,
    InstanceSnapshot, InstanceStore, InstanceValue, InstanceView, LeaseState, Load, LoadRequest,
    ManualClock, MemoryProvider, MetadataChange, NewOwner, OwnerId, OwnerInfo, PersistenceProvider,
    PropertyBag, Providers, RunnableRequest, Save, SaveRequest, SharedClock, StoreError,
    StoreSettings, Timestamp, WakeUps,
};
use instore::{ControlProvider, QueryProvider};
use tokio::task::JoinHandle;

pub use crate::assert_err;
pub use crate::faults::{Faults, FaultyProvider};

/// The command timeout cases use unless they test timeouts (on the manual clock, so it only
/// passes if a case moves time).
pub const T: Duration = Duration::from_secs(30);

/// A provider under test, with the hooks the suite needs beyond the public trait.
///
/// The persistence side is the trait itself; the query and control sides (SPEC §10, §12) are
/// optional: a provider without them runs every case but the `query` and `control` ones, which
/// panic saying the side is missing.
#[async_trait::async_trait]
pub trait TestProvider: PersistenceProvider {
    /// Damages an instance's stored data so that it no longer decodes.
    async fn corrupt_instance_data(&self, instance: InstanceId);

    /// The query side over the same storage, if the provider has one.
    fn query_side(&self) -> Option<&dyn QueryProvider> {
        None
    }

    /// The control side over the same storage, if the provider has one.
    fn control_side(&self) -> Option<&dyn ControlProvider> {
        None
    }
}

#[async_trait::async_trait]
impl TestProvider for MemoryProvider {
    async fn corrupt_instance_data(&self, instance: InstanceId) {
        assert!(
            MemoryProvider::corrupt_instance_data(self, instance),
            "no instance {instance} to corrupt"
        );
    }

    fn query_side(&self) -> Option<&dyn QueryProvider> {
        Some(self)
    }

    fn control_side(&self) -> Option<&dyn ControlProvider> {
        Some(self)
    }
}

/// Adapts any provider to [`TestProvider`] with closures for the hooks, so a provider crate's
/// test file can use the suite without implementing a foreign trait for a foreign type:
///
/// ```ignore
/// async fn provider(clock: ManualClock) -> Arc<dyn TestProvider> {
///     let p = MyProvider::open_temp(clock).await.unwrap();
///     let hooks = p.clone();
///     // All three sides (persistence, query, control); `WithHooks::new(p, ..)` for the
///     // persistence side alone.
///     WithHooks::full(Providers::of(p), move |id| {
///         let hooks = hooks.clone();
///         Box::pin(async move { hooks.damage(id).await })
///     })
/// }
/// ```
pub struct WithHooks {
    provider: Arc<dyn PersistenceProvider>,
    query: Option<Arc<dyn QueryProvider>>,
    control: Option<Arc<dyn ControlProvider>>,
    corrupt: Box<dyn Fn(InstanceId) -> instore::BoxFuture<()> + Send + Sync>,
}

impl WithHooks {
    /// Wraps the persistence side `provider` alone (the `query` and `control` cases then panic:
    /// "provider has no query side"); `corrupt` damages an instance's stored data so it no
    /// longer decodes.
    pub fn new(
        provider: Arc<dyn PersistenceProvider>,
        corrupt: impl Fn(InstanceId) -> instore::BoxFuture<()> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            query: None,
            control: None,
            corrupt: Box::new(corrupt),
        })
    }

    /// Wraps all three sides of one store (persistence, query, control, over the same storage);
    /// `corrupt` as in [`WithHooks::new`].
    pub fn full(
        providers: Providers,
        corrupt: impl Fn(InstanceId) -> instore::BoxFuture<()> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider: providers.persistence,
            query: Some(providers.query),
            control: Some(providers.control),
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

    fn query_side(&self) -> Option<&dyn QueryProvider> {
        self.query.as_deref()
    }

    fn control_side(&self) -> Option<&dyn ControlProvider> {
        self.control.as_deref()
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
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.provider.try_load_runnable(owner, request).await
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
        self.store_with_faults(settings, extensions, Faults::default())
    }

    /// As [`Env::store_with`], starting from `faults` (for switches that must be set before the
    /// store is built, as [`Faults::without_pushes`]).
    pub fn store_with_faults(
        &self,
        settings: StoreSettings,
        extensions: Vec<Arc<dyn Extension>>,
        faults: Faults,
    ) -> (InstanceStore, Arc<Faults>) {
        let faults = Arc::new(faults);
        let provider = Arc::new(FaultyProvider::new(self.provider.clone(), faults.clone()));
        let mut builder = InstanceStore::builder(provider).settings(settings);
        for e in extensions {
            builder = builder.extension(e);
        }
        (builder.build().expect("test settings are valid"), faults)
    }

    /// A store on the machine named `machine` (the name its owners record, SPEC §4), with
    /// `settings`: a host on another machine, for the query side's machine fields (SPEC §12).
    pub fn store_on(&self, machine: &str, settings: StoreSettings) -> InstanceStore {
        let provider = Arc::new(FaultyProvider::new(
            self.provider.clone(),
            Arc::new(Faults::default()),
        ));
        InstanceStore::builder(provider)
            .settings(settings)
            .machine(machine)
            .build()
            .expect("test settings are valid")
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

    /// The query side of the provider under test (SPEC §12). Panics if it has none.
    pub fn query(&self) -> &dyn QueryProvider {
        self.provider.query_side().expect(
            "provider has no query side; build it with WithHooks::full(Providers::of(..), ..)",
        )
    }

    /// The control side of the provider under test (SPEC §10). Panics if it has none.
    pub fn control(&self) -> &dyn ControlProvider {
        self.provider.control_side().expect(
            "provider has no control side; build it with WithHooks::full(Providers::of(..), ..)",
        )
    }

    /// The provider's current time.
    pub fn now(&self) -> Timestamp {
        use instore::Clock;
        self.clock.now()
    }
}

/// Asserts that `result` is an `Err` whose error matches the pattern (guards allowed), showing
/// what it got otherwise:
///
/// ```ignore
/// assert_err!(result, StoreError::InstanceLocked { owner: o, .. } if o == holder);
/// ```
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $($pattern:tt)+) => {
        match $result {
            ::std::result::Result::Ok(v) => {
                ::std::panic!("expected {}, got {v:?}", ::std::stringify!($($pattern)+))
            }
            ::std::result::Result::Err(e) => {
                let shown = ::std::format!("{e:?}");
                ::std::assert!(
                    ::std::matches!(e, $($pattern)+),
                    "expected {}, got {shown}",
                    ::std::stringify!($($pattern)+)
                );
            }
        }
    };
}

// Commands.

/// Runs `command` on a fresh handle of `owner` bound to `instance` (the handle is then dropped).
pub async fn run(
    store: &InstanceStore,
    owner: OwnerId,
    instance: Option<InstanceId>,
    command: impl Into<Command>,
) -> Result<InstanceView, StoreError> {
    store
        .execute(&store.create_handle_for(Some(owner), instance), command, T)
        .await
}

/// As [`run`], expecting success.
pub async fn ok(
    store: &InstanceStore,
    owner: OwnerId,
    instance: Option<InstanceId>,
    command: impl Into<Command>,
) -> InstanceView {
    ok_on(
        store,
        &store.create_handle_for(Some(owner), instance),
        command,
    )
    .await
}

/// Runs a command that must succeed on `handle`.
pub async fn ok_on(
    store: &InstanceStore,
    handle: &InstanceHandle,
    command: impl Into<Command>,
) -> InstanceView {
    let command = command.into();
    let name = command.name().to_owned();
    match store.execute(handle, command, T).await {
        Ok(view) => view,
        Err(e) => panic!("{name} failed: {e:?}"),
    }
}

/// Loads `id` as `owner` on a fresh handle, creating it if missing (see [`create`]).
pub async fn load_as(
    store: &InstanceStore,
    owner: OwnerId,
    id: InstanceId,
) -> Result<InstanceView, StoreError> {
    run(store, owner, Some(id), create()).await
}

/// TryLoadRunnable on a fresh handle of `owner`: the handle (keep it: dropping it unlocks what
/// was found, which may make it runnable again) and the view.
pub async fn try_load(store: &InstanceStore, owner: OwnerId) -> (InstanceHandle, InstanceView) {
    let h = store.create_handle_for(Some(owner), None);
    let view = store.execute(&h, Command::TryLoadRunnable, T).await;
    (h, view.expect("TryLoadRunnable"))
}

/// As [`try_load`], with only the instance found (if any).
pub async fn try_load_runnable(
    store: &InstanceStore,
    owner: OwnerId,
) -> (InstanceHandle, Option<InstanceId>) {
    let (h, view) = try_load(store, owner).await;
    (h, view.instance)
}

/// A command running in a task (see [`spawn`]).
pub type Running = JoinHandle<Result<InstanceView, StoreError>>;

/// Runs `command` on `handle` (owned, or shared through an `Arc`) in a task, with `timeout`.
pub fn spawn(
    store: &InstanceStore,
    handle: impl Borrow<InstanceHandle> + Send + Sync + 'static,
    command: impl Into<Command>,
    timeout: Duration,
) -> Running {
    let (store, command) = (store.clone(), command.into());
    tokio::spawn(async move { store.execute(handle.borrow(), command, timeout).await })
}

/// Bounds a task that must end, as a spawned command or wait (a safety net, not a timing
/// assertion).
pub async fn finish<R>(task: JoinHandle<R>) -> R {
    let done = tokio::time::timeout(Duration::from_secs(10), task).await;
    done.expect("the task returns").expect("no panic")
}

// Fixtures.

/// A load that creates the instance (uninitialized) if it is missing.
pub fn create() -> Load {
    Load {
        accept_uninitialized: true,
        ..Load::default()
    }
}

/// Instance data `{a: a}`.
pub fn data(a: i64) -> PropertyBag {
    bag([("a", a)])
}

/// Sets one metadata value.
pub fn set(name: &str, value: impl Into<InstanceValue>) -> (String, MetadataChange) {
    (name.to_owned(), MetadataChange::Set(value.into()))
}

/// QueryActivatable's answer when only `host_type` needs a host, for `runnable_count` runnable
/// instances.
pub fn activatable(host_type: &str, runnable_count: u64) -> Vec<Activatable> {
    vec![Activatable {
        host_type: host_type.into(),
        runnable_count,
    }]
}

/// A save with data `{step: 1}` that leaves the instance `Executing` and unlocks it, making it
/// runnable.
pub fn executing() -> Save {
    let save = Save::data(bag([("step", 1i64)]));
    save.with_status(ExecutionStatus::Executing).and_unlock()
}

/// Locks a new instance for `owner` with data `{a: 1}` (a creating load, then a save) and
/// returns the lock-bound handle.
pub async fn lock_new(store: &InstanceStore, owner: OwnerId) -> (InstanceHandle, InstanceId) {
    let id = InstanceId::new();
    let handle = store.create_handle_for(Some(owner), Some(id));
    ok_on(store, &handle, create()).await;
    ok_on(store, &handle, Save::data(data(1))).await;
    (handle, id)
}

/// A second host with its own owner (of `host_type`), reading from the same storage: to look at
/// an instance from outside.
pub async fn other_host(env: &Env, host_type: Option<&str>) -> (InstanceStore, OwnerId) {
    let store = env.store();
    let owner = env.owner(&store, host_type).await;
    (store, owner)
}

// Waiting.

/// Lets background tasks run (real time, not the store's clock) before checking that
/// something did *not* happen, or before moving the clock past a wait a task is about to start.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(30)).await;
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
