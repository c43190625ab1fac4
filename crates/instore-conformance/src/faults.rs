//! Per-store fault injection: every store a case builds with [`crate::Env::store_with`] reaches
//! the provider under test through a [`FaultyProvider`], switched by its [`Faults`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    Activatable, InstanceId, InstanceSnapshot, LeaseState, LoadRequest, NewOwner, OwnerId,
    OwnerInfo, PersistenceProvider, RunnableRequest, SaveRequest, SharedClock, StoreError,
    Timestamp, WakeUps,
};
use tokio::sync::watch;

use crate::harness::TestProvider;

/// Fault switches of one store's provider wrapper.
#[derive(Debug, Default)]
pub struct Faults {
    /// Make every lease renewal fail with a transient storage error.
    pub fail_renewals: AtomicBool,
    /// Make every unlock fail with a transient storage error (before reaching storage).
    pub fail_unlocks: AtomicBool,
    /// The store never hears the provider's pushed wake-ups (set when the store is built).
    without_pushes: bool,
    hold: Mutex<Option<watch::Sender<bool>>>,
    /// Calls held by name, before they reach storage or after (the effect committed, the answer
    /// not back).
    gates: Mutex<HashMap<(&'static str, Stage), Gate>>,
    calls: Mutex<HashMap<&'static str, usize>>,
    reached: Mutex<HashMap<&'static str, usize>>,
    completed: Mutex<HashMap<&'static str, usize>>,
}

/// Where a gate holds a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stage {
    /// Before the call reaches storage: nothing has happened yet.
    Before,
    /// After the call took effect in storage: its answer is not back yet.
    After,
}

/// A gate holding calls of one provider method at one stage until it is released.
#[derive(Debug)]
struct Gate {
    held: watch::Sender<bool>,
    /// Holds only the first call that reaches it; later calls pass.
    once: bool,
    used: bool,
}

impl Gate {
    fn new(once: bool) -> Gate {
        Gate {
            held: watch::Sender::new(true),
            once,
            used: false,
        }
    }
}

/// Locks a test-harness mutex; a poisoned one (a case panicked) is still usable plain data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faults {
    /// Switches for a store that never hears the provider's pushes: what a store sees of changes
    /// made by another process that could not notify it. Build the store with
    /// [`crate::Env::store_with_faults`]; only its fallback poll finds such changes.
    pub fn without_pushes() -> Faults {
        Faults {
            without_pushes: true,
            ..Faults::default()
        }
    }

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

    /// From now on, calls of the provider method `name` (`load`, `save`, `try_load_runnable`,
    /// `unlock` or `delete_owner`) take effect in storage and then wait, their answer not yet
    /// back, until [`Faults::release_after`].
    pub fn hold_after(&self, name: &'static str) {
        lock(&self.gates).insert((name, Stage::After), Gate::new(false));
    }

    /// As [`Faults::hold_after`], for the next call of `name` only: later calls answer at once.
    pub fn hold_next_after(&self, name: &'static str) {
        lock(&self.gates).insert((name, Stage::After), Gate::new(true));
    }

    /// Lets calls held by [`Faults::hold_after`] or [`Faults::hold_next_after`] answer.
    pub fn release_after(&self, name: &'static str) {
        if let Some(gate) = lock(&self.gates).remove(&(name, Stage::After)) {
            gate.held.send_replace(false);
        }
    }

    /// The next call of the provider method `name` (as for [`Faults::hold_after`]) waits before
    /// it reaches storage, until [`Faults::release_before`]; later calls pass.
    pub fn hold_next_before(&self, name: &'static str) {
        lock(&self.gates).insert((name, Stage::Before), Gate::new(true));
    }

    /// Lets the call held by [`Faults::hold_next_before`] go on to storage.
    pub fn release_before(&self, name: &'static str) {
        if let Some(gate) = lock(&self.gates).remove(&(name, Stage::Before)) {
            gate.held.send_replace(false);
        }
    }

    /// How many calls of the provider method `name` are waiting at a gate before storage (see
    /// [`Faults::hold_next_before`]) or have passed it.
    pub fn reached(&self, name: &str) -> usize {
        lock(&self.reached).get(name).copied().unwrap_or(0)
    }

    /// How many times the provider method `name` was called through this store.
    pub fn calls(&self, name: &str) -> usize {
        lock(&self.calls).get(name).copied().unwrap_or(0)
    }

    /// How many calls of the provider method `name` have reached storage and returned there
    /// (whether or not their answer is held).
    pub fn completed(&self, name: &str) -> usize {
        lock(&self.completed).get(name).copied().unwrap_or(0)
    }

    fn count(&self, name: &'static str) {
        *lock(&self.calls).entry(name).or_default() += 1;
    }

    /// Before a call of `name` reaches storage.
    async fn before(&self, name: &'static str) {
        *lock(&self.reached).entry(name).or_default() += 1;
        self.wait_at(name, Stage::Before).await;
    }

    /// After a call of `name` took effect in storage.
    async fn done(&self, name: &'static str) {
        *lock(&self.completed).entry(name).or_default() += 1;
        self.wait_at(name, Stage::After).await;
    }

    async fn wait_at(&self, name: &'static str, stage: Stage) {
        let rx = {
            let mut gates = lock(&self.gates);
            match gates.get_mut(&(name, stage)) {
                Some(gate) if !(gate.once && gate.used) => {
                    gate.used = true;
                    Some(gate.held.subscribe())
                }
                _ => None,
            }
        };
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|held| !held).await;
        }
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

impl FaultyProvider {
    /// Wraps `inner`, switched by `faults`.
    pub(crate) fn new(inner: Arc<dyn TestProvider>, faults: Arc<Faults>) -> FaultyProvider {
        FaultyProvider { inner, faults }
    }
}

#[async_trait::async_trait]
impl PersistenceProvider for FaultyProvider {
    fn clock(&self) -> SharedClock {
        self.inner.clock()
    }
    fn wake_ups(&self) -> WakeUps {
        if self.faults.without_pushes {
            return watch::channel(0).1; // its sender is gone: it never fires
        }
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
        self.faults.before("delete_owner").await;
        let result = self.inner.delete_owner(owner).await;
        self.faults.done("delete_owner").await;
        result
    }
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.faults.count("load");
        self.faults.gate().await;
        self.faults.before("load").await;
        let result = self.inner.load(owner, request).await;
        self.faults.done("load").await;
        result
    }
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.faults.count("save");
        self.faults.gate().await;
        self.faults.before("save").await;
        let result = self.inner.save(owner, request).await;
        self.faults.done("save").await;
        result
    }
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        self.faults.count("unlock");
        self.faults.gate().await;
        self.faults.before("unlock").await;
        if self.faults.fail_unlocks.load(Ordering::SeqCst) {
            return Err(StoreError::Storage(instore::StorageError::unavailable(
                "injected unlock failure",
            )));
        }
        let result = self.inner.unlock(owner, instance).await;
        self.faults.done("unlock").await;
        result
    }
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.faults.count("try_load_runnable");
        self.faults.before("try_load_runnable").await;
        let result = self.inner.try_load_runnable(owner, request).await;
        self.faults.done("try_load_runnable").await;
        result
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
