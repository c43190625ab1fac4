//! Which live handle holds each of an owner's locks, and background release of locks whose
//! handle was freed without saving (SPEC §5 "Ways a lock ends").
//!
//! A lock an owner holds is *claimed* by exactly one live handle. When that handle is freed the
//! claim becomes `Releasing` and a background task unlocks the instance, retrying until it
//! succeeds. A new handle of the same owner that wants the instance before an unlock attempt has
//! started takes the claim over and reclaims the lock at the same `lock_version`; if an attempt
//! is in flight it waits for that attempt and looks again (the version stays, because the lock
//! does not pass to another owner).
//!
//! Every release task has its own channel, and only the task whose channel a claim still
//! carries may remove it: a late answer can never erase a newer claim.
//!
//! Storage knows locks per owner, not per handle, so a provider may grant a handle's acquiring
//! call a lock that the runtime then refuses because another handle claims the instance
//! (`HandleConflict`). The refused handle must not unlock it: the lock in storage may be the
//! very lock the other handle holds or is about to reclaim. Instead the other handle's claim is
//! marked [`Held::stray`], and whoever drops that claim without holding the lock releases it.
//! One refusal is not needed at all: when the other handle's save with `unlock` is under way
//! and the provider granted the lock although the instance was in `busy`, that unlock has
//! committed (storage no longer had the owner's lock), so the new handle takes the claim over.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::handle::HandleShared;
use super::Inner;
use crate::{InstanceId, InstanceSnapshot, OwnerId, StorageError, StoreError};

/// What a provider call that may take a lock answers: the locked instance, if it took one.
pub(super) trait TakesLock {
    fn locked(&self) -> Option<InstanceId>;
}

impl TakesLock for InstanceSnapshot {
    fn locked(&self) -> Option<InstanceId> {
        self.locked.then_some(self.instance)
    }
}

impl TakesLock for Option<InstanceSnapshot> {
    fn locked(&self) -> Option<InstanceId> {
        self.as_ref().and_then(TakesLock::locked)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Claim {
    /// Held by a live handle.
    Handle(Held),
    /// Its handle was freed; a background task is releasing it. `attempts` moves after each
    /// unlock attempt and closes when the task ends.
    Releasing {
        in_flight: bool,
        attempts: watch::Receiver<u64>,
    },
}

/// A live handle's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// The handle.
    pub(crate) handle: u64,
    /// The handle's save with `unlock` (or `complete`) is under way.
    unlocking: bool,
    /// Another handle's acquiring call was granted the lock in storage and refused by the
    /// runtime: the owner may hold the lock even if this handle ends up without it, so dropping
    /// the claim (other than by unlocking while it holds the lock) releases it in the background.
    stray: bool,
}

impl Held {
    fn by(handle: u64) -> Claim {
        Claim::Handle(Held {
            handle,
            unlocking: false,
            stray: false,
        })
    }
}

/// How a handle came to claim an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claimed {
    /// Nobody held it (or this handle already did).
    Fresh,
    /// A freed handle's lock was waiting to be released and this handle took it over: the owner
    /// may hold the lock in storage, so if the command fails the lock must still be released.
    TookOver,
}

/// What `claim` found under the state lock.
enum Found {
    Claimed(Claimed),
    InFlight(watch::Receiver<u64>),
}

impl Inner {
    /// Claims `instance` for handle `me` before an acquiring command by id.
    pub(super) async fn claim(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
    ) -> Result<Claimed, StoreError> {
        loop {
            let found = {
                let mut state = self.state();
                let Some(entry) = state.owners.get_mut(&owner) else {
                    return Err(StoreError::OwnerLost { owner });
                };
                let found = match entry.claims.get(&instance) {
                    None => Found::Claimed(Claimed::Fresh),
                    Some(Claim::Handle(h)) if h.handle == me => return Ok(Claimed::Fresh),
                    Some(Claim::Handle(_)) => return Err(StoreError::HandleConflict { instance }),
                    Some(Claim::Releasing {
                        in_flight: false, ..
                    }) => Found::Claimed(Claimed::TookOver),
                    Some(Claim::Releasing {
                        in_flight: true,
                        attempts,
                    }) => Found::InFlight(attempts.clone()),
                };
                if let Found::Claimed(_) = found {
                    entry.claims.insert(instance, Held::by(me));
                }
                found
            };
            match found {
                Found::Claimed(claimed) => return Ok(claimed),
                // An unlock attempt is in flight: wait for it to end, then look again. If the
                // release task is gone the store has shut down and nothing will change.
                Found::InFlight(mut attempts) => {
                    if attempts.changed().await.is_err() && self.shutdown.is_cancelled() {
                        return Err(StoreError::invalid("the store is shut down; open it again"));
                    }
                }
            }
        }
    }

    /// Records that handle `me` holds `instance` after a command that found the instance itself
    /// (by key, or runnable) and was granted its lock; `in_busy` says whether the instance was
    /// among the `busy` instances the provider was given. `HandleConflict` if another live handle
    /// holds it, and then that handle's claim is marked stray: the lock granted here stays with
    /// the owner in storage until that handle holds it or drops its claim (see the module docs).
    ///
    /// One exception: if the other handle is unlocking and the instance was in `busy`, the
    /// provider granted the lock only because the owner no longer held it, so that unlock has
    /// committed; `me` takes the claim over.
    pub(super) fn claim_found(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
        in_busy: bool,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let Some(entry) = state.owners.get_mut(&owner) else {
            return Err(StoreError::OwnerLost { owner });
        };
        match entry.claims.get_mut(&instance) {
            Some(Claim::Handle(h)) if h.handle != me && !(h.unlocking && in_busy) => {
                h.stray = true;
                Err(StoreError::HandleConflict { instance })
            }
            // A `Releasing` claim here means its unlock already reached storage (the provider
            // would not have handed the instance over otherwise); the new claim wins.
            _ => {
                entry.claims.insert(instance, Held::by(me));
                Ok(())
            }
        }
    }

    /// Marks handle `me`'s claim on `instance` as unlocking (before its save with `unlock`) or
    /// not (after it failed). `false` if the claim is no longer `me`'s: another handle took it
    /// over, because this handle's unlock had committed.
    pub(super) fn set_unlocking(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
        unlocking: bool,
    ) -> bool {
        let mut state = self.state();
        let held = state
            .owners
            .get_mut(&owner)
            .and_then(|e| e.claims.get_mut(&instance));
        match held {
            Some(Claim::Handle(h)) if h.handle == me => {
                h.unlocking = unlocking;
                true
            }
            _ => false,
        }
    }

    /// Handle `me` holds the lock of `instance` in storage (a command on it just succeeded
    /// holding it): whatever lock the owner holds there is this handle's, none is stray.
    pub(super) fn confirm_held(&self, owner: OwnerId, instance: InstanceId, me: u64) {
        let mut state = self.state();
        let held = state
            .owners
            .get_mut(&owner)
            .and_then(|e| e.claims.get_mut(&instance));
        if let Some(Claim::Handle(h)) = held {
            if h.handle == me {
                *h = Held {
                    handle: me,
                    unlocking: false,
                    stray: false,
                };
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

    /// Drops handle `me`'s claim on `instance` after a failed acquiring command: forgotten if it
    /// was fresh, released in the background if it had been taken over.
    pub(super) fn abandon(
        self: &Arc<Self>,
        owner: OwnerId,
        instance: InstanceId,
        me: u64,
        claimed: Claimed,
    ) {
        match claimed {
            Claimed::Fresh => self.unclaim(owner, instance, me),
            Claimed::TookOver => self.release(owner, instance, me),
        }
    }

    /// Drops handle `me`'s claim on `instance` (the lock is gone or was never taken). If the
    /// claim is stray, the owner may still hold a lock another handle was granted and refused:
    /// it is released in the background instead.
    pub(super) fn unclaim(self: &Arc<Self>, owner: OwnerId, instance: InstanceId, me: u64) {
        let stray = {
            let mut state = self.state();
            let Some(entry) = state.owners.get_mut(&owner) else {
                return;
            };
            match entry.claims.get(&instance) {
                Some(Claim::Handle(h)) if h.handle == me && h.stray => true,
                Some(Claim::Handle(h)) if h.handle == me => {
                    entry.claims.remove(&instance);
                    false
                }
                _ => false,
            }
        };
        if stray {
            self.release(owner, instance, me);
        }
    }

    /// Instances the owner holds through handles other than `me`, or is releasing.
    pub(super) fn busy(&self, owner: OwnerId, me: u64) -> Vec<InstanceId> {
        let state = self.state();
        state.owners.get(&owner).map_or_else(Vec::new, |e| {
            e.claims
                .iter()
                .filter(|(_, c)| !matches!(c, Claim::Handle(h) if h.handle == me))
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

    /// Runs a provider call that may lock an instance the command cannot name beforehand (by
    /// key, the next runnable) on a task of its own. If the command is cut off (its timeout)
    /// while the call runs, the call still finishes, and a lock it took — which no handle will
    /// ever know of — is handed to a release task instead of staying with the owner until its
    /// lease ends.
    pub(super) async fn acquiring<T, F>(
        self: &Arc<Self>,
        owner: OwnerId,
        me: u64,
        call: F,
    ) -> Result<T, StoreError>
    where
        T: TakesLock + Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let inner = self.clone();
        tokio::spawn(async move {
            let result = call.await;
            if let Err(Ok(late)) = tx.send(result) {
                if let Some(instance) = late.locked() {
                    inner.release(owner, instance, me);
                }
            }
        });
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Storage(StorageError::new(
                crate::StorageErrorKind::Other,
                "the provider call ended without an answer (it panicked)",
            )))
        })
    }

    /// Starts releasing `instance` if handle `me` holds it or nobody does (after a command that
    /// timed out, the lock may have been taken in storage without the handle knowing). If another
    /// live handle claims it, that claim is marked stray instead.
    pub(super) fn release(self: &Arc<Self>, owner: OwnerId, instance: InstanceId, me: u64) {
        let (attempts, rx) = watch::channel(0u64);
        {
            let mut state = self.state();
            let Some(entry) = state.owners.get_mut(&owner) else {
                return;
            };
            if entry.lost {
                return;
            }
            match entry.claims.get_mut(&instance) {
                None => {}
                Some(Claim::Handle(h)) if h.handle == me => {}
                // Another live handle claims it: the lock released here may be the one it holds
                // or is about to reclaim, so it is left to that handle (see the module docs).
                Some(Claim::Handle(h)) => {
                    h.stray = true;
                    return;
                }
                Some(Claim::Releasing { .. }) => return,
            }
            entry.claims.insert(
                instance,
                Claim::Releasing {
                    in_flight: false,
                    attempts: rx,
                },
            );
        }
        let inner = self.clone();
        self.spawn(async move { inner.release_until_done(owner, instance, attempts).await });
    }

    /// Whether the claim on `instance` is still this task's `Releasing` one; if so, `update` it.
    fn with_own_claim(
        &self,
        owner: OwnerId,
        instance: InstanceId,
        attempts: &watch::Sender<u64>,
        update: impl FnOnce(&mut std::collections::HashMap<InstanceId, Claim>),
    ) -> bool {
        let mut state = self.state();
        let Some(entry) = state.owners.get_mut(&owner) else {
            return false;
        };
        let own = !entry.lost
            && matches!(entry.claims.get(&instance),
                Some(Claim::Releasing { attempts: rx, .. }) if rx.same_channel(&attempts.subscribe()));
        if own {
            update(&mut entry.claims);
        }
        own
    }

    async fn release_until_done(
        self: Arc<Self>,
        owner: OwnerId,
        instance: InstanceId,
        attempts: watch::Sender<u64>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let set_in_flight = |flag: bool| {
            move |claims: &mut std::collections::HashMap<InstanceId, Claim>| {
                if let Some(Claim::Releasing { in_flight, .. }) = claims.get_mut(&instance) {
                    *in_flight = flag;
                }
            }
        };
        // Taken over by a new handle, or the owner is gone: nothing (more) to release.
        while self.with_own_claim(owner, instance, &attempts, set_in_flight(true)) {
            let result = self.provider.unlock(owner, instance).await;
            let done = result.is_ok();
            if let Err(e) = result {
                tracing::warn!(%owner, %instance, error = %e, "background unlock failed; retrying");
            }
            self.with_own_claim(owner, instance, &attempts, |claims| {
                if done {
                    claims.remove(&instance);
                } else {
                    set_in_flight(false)(claims);
                }
            });
            attempts.send_modify(|n| *n += 1);
            if done || !self.sleep(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
