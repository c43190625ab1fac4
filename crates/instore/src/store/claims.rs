//! Which live handle holds each of an owner's locks, and background release of locks whose
//! handle was freed without saving (SPEC §5 "Ways a lock ends").
//!
//! A lock an owner holds is *claimed* by exactly one live handle. When that handle is freed the
//! claim becomes `Releasing` and a background task unlocks the instance, retrying until it
//! succeeds. A new handle of the same owner that wants the instance before the unlock has started
//! takes the claim over and reclaims the lock at the same `lock_version`; if the unlock is
//! already in flight it waits for it and then locks afresh (the version stays, because the lock
//! does not pass to another owner).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::handle::HandleShared;
use super::Inner;
use crate::{InstanceId, OwnerId, StoreError};

#[derive(Debug, Clone)]
pub(crate) enum Claim {
    /// Held by this live handle.
    Handle(u64),
    /// Its handle was freed; a background task is releasing it.
    Releasing {
        in_flight: bool,
        done: watch::Receiver<bool>,
    },
}

impl Inner {
    /// Claims `instance` for handle `me` before an acquiring command by id.
    pub(super) async fn claim(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
    ) -> Result<(), StoreError> {
        loop {
            let mut done = {
                let mut state = self.state();
                let Some(entry) = state.owners.get_mut(&owner) else {
                    return Err(StoreError::OwnerLost { owner });
                };
                match entry.claims.get(&instance) {
                    None
                    | Some(Claim::Releasing {
                        in_flight: false, ..
                    }) => {
                        entry.claims.insert(instance, Claim::Handle(me));
                        return Ok(());
                    }
                    Some(Claim::Handle(h)) if *h == me => return Ok(()),
                    Some(Claim::Handle(_)) => return Err(StoreError::HandleConflict { instance }),
                    Some(Claim::Releasing {
                        in_flight: true,
                        done,
                    }) => done.clone(),
                }
            };
            // The unlock is in flight: wait for it, then claim afresh.
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Records that handle `me` holds `instance` after a command that found the instance itself
    /// (by key, or runnable). `HandleConflict` if another live handle holds it.
    pub(super) fn claim_found(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let Some(entry) = state.owners.get_mut(&owner) else {
            return Err(StoreError::OwnerLost { owner });
        };
        match entry.claims.get(&instance) {
            Some(Claim::Handle(h)) if *h != me => Err(StoreError::HandleConflict { instance }),
            _ => {
                entry.claims.insert(instance, Claim::Handle(me));
                Ok(())
            }
        }
    }

    /// Whether `instance` is being released in the background (so a conflict on it is not a
    /// real one).
    pub(super) fn is_releasing(&self, owner: OwnerId, instance: InstanceId) -> bool {
        let state = self.state();
        state
            .owners
            .get(&owner)
            .is_some_and(|e| matches!(e.claims.get(&instance), Some(Claim::Releasing { .. })))
    }

    /// Drops handle `me`'s claim on `instance` (the lock is gone or was never taken).
    pub(super) fn unclaim(&self, owner: OwnerId, instance: InstanceId, me: u64) {
        let mut state = self.state();
        if let Some(entry) = state.owners.get_mut(&owner) {
            if matches!(entry.claims.get(&instance), Some(Claim::Handle(h)) if *h == me) {
                entry.claims.remove(&instance);
            }
        }
    }

    /// Instances the owner holds through handles other than `me`, or is releasing.
    pub(super) fn busy(&self, owner: OwnerId, me: u64) -> Vec<InstanceId> {
        let state = self.state();
        state.owners.get(&owner).map_or_else(Vec::new, |e| {
            e.claims
                .iter()
                .filter(|(_, c)| !matches!(c, Claim::Handle(h) if *h == me))
                .map(|(i, _)| *i)
                .collect()
        })
    }

    /// Frees a handle; releases its lock in the background if it holds one.
    pub(crate) fn free_handle(self: &Arc<Self>, handle: &HandleShared) {
        let binding = {
            let mut b = handle.state();
            if b.freed {
                return;
            }
            b.freed = true;
            let binding = *b;
            b.lock_version = None;
            binding
        };
        handle.freed.cancel();
        if let (Some(owner), Some(instance), Some(_)) =
            (binding.owner, binding.instance, binding.lock_version)
        {
            self.release(owner, instance, handle.id);
        }
    }

    /// Starts releasing `instance` if handle `me` holds it or nobody does (after a command that
    /// timed out, the lock may have been taken in storage without the handle knowing).
    pub(super) fn release(self: &Arc<Self>, owner: OwnerId, instance: InstanceId, me: u64) {
        let (tx, rx) = watch::channel(false);
        {
            let mut state = self.state();
            let Some(entry) = state.owners.get_mut(&owner) else {
                return;
            };
            if entry.lost {
                return;
            }
            match entry.claims.get(&instance) {
                None => {}
                Some(Claim::Handle(h)) if *h == me => {}
                Some(_) => return,
            }
            entry.claims.insert(
                instance,
                Claim::Releasing {
                    in_flight: false,
                    done: rx,
                },
            );
        }
        let inner = self.clone();
        self.spawn(async move { inner.release_until_done(owner, instance, tx).await });
    }

    async fn release_until_done(
        self: Arc<Self>,
        owner: OwnerId,
        instance: InstanceId,
        done: watch::Sender<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            {
                let mut state = self.state();
                let Some(entry) = state.owners.get_mut(&owner) else {
                    break;
                };
                match entry.claims.get_mut(&instance) {
                    Some(Claim::Releasing { in_flight, .. }) if !entry.lost => *in_flight = true,
                    // Taken over by a new handle, or the owner is gone: nothing to release.
                    _ => break,
                }
            }
            match self.provider.unlock(owner, instance).await {
                Ok(()) => {
                    let mut state = self.state();
                    if let Some(entry) = state.owners.get_mut(&owner) {
                        entry.claims.remove(&instance);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(%owner, %instance, error = %e, "background unlock failed; retrying");
                    {
                        let mut state = self.state();
                        if let Some(Claim::Releasing { in_flight, .. }) = state
                            .owners
                            .get_mut(&owner)
                            .and_then(|e| e.claims.get_mut(&instance))
                        {
                            *in_flight = false;
                        }
                    }
                    if !self.sleep(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = done.send(true);
    }
}
