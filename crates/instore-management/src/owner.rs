//! The service's own instance owner: the one that locks instances when a command is executed at
//! the store level. Registered on first use, without a host type (it runs nothing, so it never
//! counts as a live host of any type and never changes an instance's host type), and replaced
//! when it is lost.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::TryRecvError};

use instore::{
    bag, Command, CreateOwner, InstanceStore, OwnerId, PropertyBag, StoreError, StoreEvent,
};

/// Owner metadata entry saying what registered the owner (`management-service`), so operators
/// listing owners (and hosts finding an instance locked by it) can tell.
pub const ROLE: &str = "instore:role";

#[derive(Debug)]
pub(crate) struct ServiceOwner {
    store: InstanceStore,
    metadata: PropertyBag,
    state: Mutex<OwnerState>,
    /// One registration at a time.
    registering: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct OwnerState {
    current: Option<OwnerId>,
    /// The store's events, to adopt the replacement the store registers when our owner is lost
    /// (`auto_recover_owner`).
    events: broadcast::Receiver<StoreEvent>,
}

impl ServiceOwner {
    pub(crate) fn new(store: InstanceStore) -> Self {
        let events = store.subscribe();
        Self {
            store,
            metadata: bag([(ROLE, "management-service")]),
            state: Mutex::new(OwnerState {
                current: None,
                events,
            }),
            registering: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OwnerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner to execute with, after applying the store's news about it.
    fn current(&self) -> Option<OwnerId> {
        let auto_recover = self.store.settings().auto_recover_owner;
        let mut state = self.state();
        loop {
            match state.events.try_recv() {
                Ok(StoreEvent::OwnerRecovered { lost, replacement }) => {
                    if state.current == Some(lost) {
                        tracing::info!(%lost, %replacement, "management service owner replaced");
                        state.current = Some(replacement);
                    }
                }
                Ok(StoreEvent::OwnerLost { owner }) => {
                    if state.current == Some(owner) && !auto_recover {
                        state.current = None;
                    }
                }
                Ok(_) => {}
                // Events were missed: whether ours was replaced is unknown, so register afresh.
                Err(TryRecvError::Lagged(_)) => state.current = None,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        state.current
    }

    /// The service's owner, registering it if there is none (yet, or any more).
    pub(crate) async fn get(&self, timeout: Duration) -> Result<OwnerId, StoreError> {
        if let Some(owner) = self.current() {
            return Ok(owner);
        }
        let _one = self.registering.lock().await;
        if let Some(owner) = self.current() {
            return Ok(owner);
        }
        let default_before = self.store.default_owner();
        let handle = self.store.create_handle_for(None, None);
        let create = CreateOwner {
            host_type: None,
            metadata: self.metadata.clone(),
            lease: None,
        };
        let view = self
            .store
            .execute(&handle, Command::CreateOwner(create), timeout)
            .await?;
        let owner = view
            .owner
            .expect("a successful CreateOwner binds the view to the new owner");
        // The first owner of a store becomes its default owner; the service's must not, or a
        // host sharing this store object would bind its handles to it.
        if default_before.is_none() && self.store.default_owner() == Some(owner) {
            self.store.set_default_owner(None);
        }
        tracing::info!(%owner, "management service owner registered");
        self.state().current = Some(owner);
        Ok(owner)
    }

    /// A command answered `OwnerLost` for `owner`. Without auto-recovery, the next command
    /// registers a new owner; with it, the store's replacement is adopted when it is reported.
    pub(crate) fn lost(&self, owner: OwnerId) {
        if !self.store.settings().auto_recover_owner {
            let mut state = self.state();
            if state.current == Some(owner) {
                state.current = None;
            }
        }
    }

    /// Deletes the owner (a clean stop: instances it may still hold are takeable at once).
    pub(crate) async fn delete(&self, timeout: Duration) {
        let Some(owner) = self.state().current.take() else {
            return;
        };
        let handle = self.store.create_handle_for(Some(owner), None);
        match self
            .store
            .execute(&handle, Command::DeleteOwner, timeout)
            .await
        {
            Ok(_) => tracing::debug!(%owner, "management service owner deleted"),
            Err(e) => {
                tracing::debug!(%owner, error = %e, "could not delete the management service owner")
            }
        }
    }
}
