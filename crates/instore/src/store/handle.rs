//! Instance handles: a host-side session bound step by step to an owner, an instance and a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::{InstanceId, OwnerId};

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// A handle, created by [`crate::InstanceStore::create_handle`]. Commands run against it one at
/// a time. Dropping it frees it (as [`InstanceHandle::free`] does).
#[derive(Debug)]
pub struct InstanceHandle {
    pub(crate) shared: Arc<HandleShared>,
}

#[derive(Debug)]
pub(crate) struct HandleShared {
    pub(crate) id: u64,
    pub(crate) store: Weak<Inner>,
    pub(crate) state: Mutex<Binding>,
    /// Cancelled when the handle is freed: ends a wait for events.
    pub(crate) freed: CancellationToken,
}

/// What a handle is bound to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) owner: Option<OwnerId>,
    pub(crate) instance: Option<InstanceId>,
    /// `Some` while the handle holds the instance's lock.
    pub(crate) lock_version: Option<u64>,
    pub(crate) busy: bool,
    pub(crate) waiting: bool,
    pub(crate) freed: bool,
}

impl InstanceHandle {
    pub(crate) fn new(
        store: Weak<Inner>,
        owner: Option<OwnerId>,
        instance: Option<InstanceId>,
    ) -> Self {
        let binding = Binding {
            owner,
            instance,
            ..Binding::default()
        };
        Self {
            shared: Arc::new(HandleShared {
                id: NEXT_HANDLE.fetch_add(1, Ordering::Relaxed),
                store,
                state: Mutex::new(binding),
                freed: CancellationToken::new(),
            }),
        }
    }

    /// A process-unique number for this handle (for logs).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The owner the handle is bound to.
    pub fn owner(&self) -> Option<OwnerId> {
        self.shared.binding().owner
    }

    /// The instance the handle is bound to.
    pub fn instance(&self) -> Option<InstanceId> {
        self.shared.binding().instance
    }

    /// The lock epoch while the handle holds the instance's lock.
    pub fn lock_version(&self) -> Option<u64> {
        self.shared.binding().lock_version
    }

    /// Whether the handle has been freed (explicitly, by a lost lock, a timeout, or an unlock).
    pub fn is_freed(&self) -> bool {
        self.shared.binding().freed
    }

    /// Frees the handle. If it holds a lock without having saved with `unlock`, the store
    /// releases the lock in the background (retrying until it succeeds). A wait for events on it
    /// ends.
    pub fn free(&self) {
        if let Some(store) = self.shared.store.upgrade() {
            store.free_handle(&self.shared);
        } else {
            self.shared.state().freed = true;
            self.shared.freed.cancel();
        }
    }
}

impl Drop for InstanceHandle {
    fn drop(&mut self) {
        self.free();
    }
}

impl HandleShared {
    pub(crate) fn state(&self) -> MutexGuard<'_, Binding> {
        // A poisoned handle lock means a panic while updating a binding; the binding itself is
        // plain data and still consistent enough to free the handle.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn binding(&self) -> Binding {
        *self.state()
    }
}
