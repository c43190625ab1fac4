//! Owners as the runtime tracks them: registration, background lease renewal, loss and automatic
//! re-registration (SPEC §4).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Inner, OwnerEntry, OwnerSignal, StoreEvent};
use crate::{LeaseState, NewOwner, OwnerId, OwnerInfo, PropertyBag, StoreError, Timestamp};

/// How often a failing renewal (or recovery) is retried.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What a command needs to know about its owner.
#[derive(Debug, Clone)]
pub(super) struct OwnerContext {
    pub(super) host_type: Option<String>,
}

impl Inner {
    /// Records an owner the provider registered.
    pub(super) fn register_owner(&self, info: &OwnerInfo, lease: Duration) {
        let entry = OwnerEntry {
            host_type: info.host_type.clone(),
            metadata: info.metadata.clone(),
            lease,
            lease_expires_at: info.lease_expires_at,
            lost: false,
            deleting: false,
            claims: HashMap::new(),
            signal: watch::Sender::new(OwnerSignal::default()),
        };
        let mut state = self.state();
        state.owners.insert(info.id, entry);
        if state.default_owner.is_none() {
            state.default_owner = Some(info.id);
        }
        drop(state);
        self.rescan.notify_one();
        if lease < self.settings.renew_every * 2 {
            self.renew_sooner.notify_one();
        }
    }

    /// How often renewals run: the store's `renew_every`, or half the shortest live lease if that
    /// is sooner, so that every owner is renewed well before its lease ends.
    fn renewal_interval(&self) -> Duration {
        let state = self.state();
        let shortest = state
            .owners
            .values()
            .filter(|e| !e.lost)
            .map(|e| e.lease / 2)
            .min();
        shortest.map_or(self.settings.renew_every, |half| {
            half.min(self.settings.renew_every)
        })
    }

    /// Marks (or unmarks, if the deletion failed) an owner as being deleted.
    pub(super) fn set_deleting(&self, owner: OwnerId, deleting: bool) {
        if let Some(entry) = self.state().owners.get_mut(&owner) {
            entry.deleting = deleting;
        }
    }

    /// The owner's context if it is alive. An owner whose lease has passed by the store's clock
    /// is marked lost here, without waiting for the renewal task to notice.
    pub(super) fn check_owner(
        self: &Arc<Self>,
        owner: OwnerId,
    ) -> Result<OwnerContext, StoreError> {
        let expired = {
            let state = self.state();
            let Some(entry) = state.owners.get(&owner) else {
                return Err(StoreError::invalid(format!(
                    "owner {owner} was not created through this store; bind handles to owners this store created"
                )));
            };
            if entry.lost {
                return Err(StoreError::OwnerLost { owner });
            }
            if self.clock.now() < entry.lease_expires_at {
                return Ok(OwnerContext {
                    host_type: entry.host_type.clone(),
                });
            }
            true
        };
        if expired {
            self.mark_lost(owner);
        }
        Err(StoreError::OwnerLost { owner })
    }

    /// Marks an owner deleted: like lost, but without an event or a replacement.
    pub(super) fn mark_deleted(&self, owner: OwnerId) {
        let mut state = self.state();
        if let Some(entry) = state.owners.get_mut(&owner) {
            entry.lost = true;
            entry.claims.clear();
            entry.signal.send_modify(|s| s.lost = true);
        }
        if state.default_owner == Some(owner) {
            state.default_owner = None;
        }
        drop(state);
        self.rescan.notify_one();
    }

    /// Marks an owner lost, reports it, and starts its replacement if auto-recovery is on.
    pub(super) fn mark_lost(self: &Arc<Self>, owner: OwnerId) {
        let replacement = {
            let mut state = self.state();
            let Some(entry) = state.owners.get_mut(&owner) else {
                return;
            };
            if entry.lost || entry.deleting {
                return;
            }
            entry.lost = true;
            entry.claims.clear();
            entry.signal.send_modify(|s| s.lost = true);
            let replacement = (entry.host_type.clone(), entry.metadata.clone(), entry.lease);
            // Without recovery nothing will replace it: new handles must not bind to a dead
            // owner. (With recovery the replacement becomes the default when it is registered.)
            if !self.settings.auto_recover_owner && state.default_owner == Some(owner) {
                state.default_owner = None;
            }
            replacement
        };
        tracing::warn!(%owner, "owner lost: its lease ended before it could be renewed");
        let _ = self.events.send(StoreEvent::OwnerLost { owner });
        self.rescan.notify_one();
        // The runtime may give up before storage does (a renewal answered too late): end the
        // lease there too, so nobody waits for it — least of all the replacement.
        let inner = self.clone();
        self.spawn(async move {
            if let Err(e) = inner.provider.delete_owner(owner).await {
                tracing::debug!(%owner, error = %e, "could not end a lost owner's lease in storage");
            }
        });
        if self.settings.auto_recover_owner {
            let inner = self.clone();
            let (host_type, metadata, lease) = replacement;
            self.spawn(async move { inner.recover(owner, host_type, metadata, lease).await });
        }
    }

    async fn recover(
        self: Arc<Self>,
        lost: OwnerId,
        host_type: Option<String>,
        metadata: PropertyBag,
        lease: Duration,
    ) {
        loop {
            let request = NewOwner {
                host_type: host_type.clone(),
                metadata: metadata.clone(),
                lease,
                machine: self.machine.clone(),
            };
            match self.provider.create_owner(request).await {
                Ok(info) => {
                    self.register_owner(&info, lease);
                    {
                        let mut state = self.state();
                        if state.default_owner == Some(lost) {
                            state.default_owner = Some(info.id);
                        }
                    }
                    tracing::info!(%lost, replacement = %info.id, "owner recovered");
                    let _ = self.events.send(StoreEvent::OwnerRecovered {
                        lost,
                        replacement: info.id,
                    });
                    return;
                }
                Err(e) => {
                    tracing::warn!(%lost, error = %e, "could not register a replacement owner; retrying");
                    if !self.sleep(RETRY_EVERY).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The renewal task: renews every [`Inner::renewal_interval`] on a fixed cadence (the next
/// renewal is due one interval after the previous one was due, however long the previous took),
/// every second while renewals fail, and at once when an owner with a short lease registers.
///
/// `due` is when the first pass is due: fixed by the caller when the store is built, not when
/// this task first runs, so a busy executor cannot shift the schedule.
pub(super) async fn run_renewals(inner: Arc<Inner>, mut due: Timestamp) {
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = inner.clock.sleep_until(due) => {}
            _ = inner.renew_sooner.notified() => due = inner.clock.now(),
        }
        let renewed = renew_all(&inner).await;
        let now = inner.clock.now();
        let interval = inner.renewal_interval();
        due = if renewed {
            due.plus(interval)
        } else {
            now.plus(RETRY_EVERY.min(interval))
        };
        // Far behind (the process was paused, or the clock jumped): renew once more now, then
        // keep the cadence from here.
        if due < now {
            due = now;
        }
    }
}

/// One renewal pass over the live owners; true if every renewal succeeded.
pub(super) async fn renew_all(inner: &Arc<Inner>) -> bool {
    let owners: Vec<(OwnerId, Duration)> = {
        let state = inner.state();
        state
            .owners
            .iter()
            .filter(|(_, e)| !e.lost)
            .map(|(id, e)| (*id, e.lease))
            .collect()
    };
    let mut all_renewed = true;
    for (owner, lease) in owners {
        match inner.provider.renew_lease(owner, lease).await {
            Ok(LeaseState::Renewed { expires_at }) => {
                let mut state = inner.state();
                if let Some(entry) = state.owners.get_mut(&owner) {
                    entry.lease_expires_at = entry.lease_expires_at.max(expires_at);
                }
            }
            Ok(LeaseState::Expired | LeaseState::Missing) => inner.mark_lost(owner),
            Err(e) => {
                all_renewed = false;
                tracing::warn!(%owner, error = %e, "lease renewal failed; retrying until the lease ends");
                let expired = {
                    let state = inner.state();
                    state
                        .owners
                        .get(&owner)
                        .is_some_and(|e| inner.clock.now() >= e.lease_expires_at)
                };
                if expired {
                    inner.mark_lost(owner);
                }
            }
        }
    }
    all_renewed
}
