//! One side of the comparison: a store over a provider (wrapped to count unlocks and
//! renewals), its clock and its handle slots.

use instore::{
    Activatable, Clock, InstanceHandle, InstanceId, InstanceSnapshot, InstanceStore, LeaseState,
    LoadRequest, ManualClock, NewOwner, OwnerId, OwnerInfo, PersistenceProvider, RunnableRequest,
    SaveRequest, SharedClock, StoreError, Timestamp, WakeUps,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ops::Setup;
use super::universe::settings;
use super::HANDLES;

// The provider wrapper: counts the unlocks and renewals that reached the provider and returned.

#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Unlocks that succeeded.
    pub(super) unlocks: AtomicU64,
    /// The last unlock that failed.
    pub(super) unlock_error: Mutex<Option<String>>,
    /// Lease renewals answered (whatever the answer).
    pub(super) renewals: AtomicU64,
}

#[derive(Debug)]
struct Counting {
    inner: Arc<dyn PersistenceProvider>,
    pub(super) counts: Arc<Counts>,
}

#[async_trait::async_trait]
impl PersistenceProvider for Counting {
    fn clock(&self) -> SharedClock {
        self.inner.clock()
    }
    fn wake_ups(&self) -> WakeUps {
        self.inner.wake_ups()
    }
    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        self.inner.create_owner(owner).await
    }
    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        let result = self.inner.renew_lease(owner, lease).await;
        self.counts.renewals.fetch_add(1, Ordering::SeqCst);
        result
    }
    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        self.inner.delete_owner(owner).await
    }
    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.inner.load(owner, request).await
    }
    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        self.inner.save(owner, request).await
    }
    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        let result = self.inner.unlock(owner, instance).await;
        match &result {
            Ok(()) => {
                self.counts.unlocks.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                *self
                    .counts
                    .unlock_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:?}"));
            }
        }
        result
    }
    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.inner.try_load_runnable(owner, request).await
    }
    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_runnable(host_type).await
    }
    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        self.inner.activatable().await
    }
    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        self.inner.owners().await
    }
}

// One side: a store over a provider, its clock, its handles and its id normalization.

pub(super) struct Side {
    pub(super) store: InstanceStore,
    pub(super) clock: ManualClock,
    pub(super) counts: Arc<Counts>,
    pub(super) handles: Vec<Option<InstanceHandle>>,
    /// Owners in creation order.
    pub(super) owners: Vec<OwnerId>,
    /// Invented instance ids in order of first appearance.
    pub(super) invented: Vec<InstanceId>,
}

impl Side {
    pub(super) fn new(
        provider: Arc<dyn PersistenceProvider>,
        clock: ManualClock,
        setup: Setup,
    ) -> Side {
        let counts = Arc::new(Counts::default());
        let provider = Arc::new(Counting {
            inner: provider,
            counts: counts.clone(),
        });
        let store = InstanceStore::builder(provider)
            .settings(settings(setup))
            .machine("model")
            .build()
            .expect("the model's settings are valid");
        Side {
            store,
            clock,
            counts,
            handles: (0..HANDLES).map(|_| None).collect(),
            owners: Vec::new(),
            invented: Vec::new(),
        }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(super) fn handle(&self, h: u8) -> Option<&InstanceHandle> {
        self.handles[usize::from(h)].as_ref()
    }
}
