//! Executing one command: binding checks, validation, extensions, the provider call with the
//! lock-retry policy and the timeout, then the new binding and the view.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::handle::{Binding, HandleShared};
use super::Inner;
use crate::validate::{self, Bound};
use crate::{
    value::readable, Command, CommandContext, InstanceHandle, InstanceSnapshot, InstanceView,
    KeyView, LoadGuards, LoadRequest, LoadTarget, LockRetry, NewOwner, OwnerId, SaveRequest,
    SaveRules, StoreError, Timestamp,
};

/// Clears the handle's busy flag however the command ends (including by being dropped).
struct Busy<'a>(&'a HandleShared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.state().busy = false;
    }
}

impl Inner {
    pub(super) fn check_handle(self: &Arc<Self>, handle: &HandleShared) -> Result<(), StoreError> {
        if !std::ptr::eq(handle.store.as_ptr(), Arc::as_ptr(self)) {
            return Err(StoreError::invalid(
                "the handle was created by another store; use handles of the store you execute on",
            ));
        }
        if self.shutdown.is_cancelled() {
            return Err(StoreError::invalid("the store is shut down; open it again"));
        }
        Ok(())
    }

    pub(super) async fn execute(
        self: &Arc<Self>,
        handle: &InstanceHandle,
        command: Command,
        timeout: Duration,
    ) -> Result<InstanceView, StoreError> {
        let shared = &handle.shared;
        self.check_handle(shared)?;
        let binding = {
            let mut b = shared.state();
            if b.freed {
                return Err(StoreError::invalid(format!(
                    "{} on a freed handle: the handle was freed (unlock, lost lock, timeout or free); create a new handle",
                    command.name()
                )));
            }
            if b.busy {
                return Err(StoreError::CommandOverlap);
            }
            b.busy = true;
            *b
        };
        let _busy = Busy(shared);
        // Which instance the command may lock without the handle knowing yet, should it be cut
        // off by the timeout.
        let may_lock = match command {
            Command::Load(_) | Command::Save(_) if binding.lock_version.is_none() => {
                binding.instance
            }
            _ => None,
        };
        let deadline = self.clock.now().plus(timeout);
        let result = tokio::select! {
            biased;
            r = self.run(shared, binding, command, deadline) => r,
            _ = self.clock.sleep_until(deadline) => Err(StoreError::Timeout),
        };
        if matches!(result, Err(StoreError::Timeout)) {
            self.free_handle(shared);
            if let (Some(owner), Some(instance)) = (binding.owner, may_lock) {
                self.release(owner, instance, shared.id);
            }
        }
        result
    }

    async fn run(
        self: &Arc<Self>,
        handle: &HandleShared,
        b: Binding,
        mut command: Command,
        deadline: Timestamp,
    ) -> Result<InstanceView, StoreError> {
        validate::command(
            &command,
            Bound {
                owner: b.owner,
                instance: b.instance,
            },
        )?;
        let owner_ctx = match (&command, b.owner) {
            (Command::CreateOwner(_), _) | (_, None) => None,
            (_, Some(owner)) => Some((owner, self.check_owner(owner)?)),
        };
        let ctx = CommandContext {
            owner: b.owner,
            instance: b.instance,
            lock_version: b.lock_version,
        };
        let mut guards = LoadGuards::default();
        for ext in &self.extensions {
            ext.before(&ctx, &mut command, &mut guards)?;
        }
        let view = match (&command, owner_ctx) {
            (Command::CreateOwner(c), _) => {
                let lease = c.lease.unwrap_or(self.settings.lease);
                let info = self
                    .provider
                    .create_owner(NewOwner {
                        host_type: c.host_type.clone(),
                        metadata: c.metadata.clone(),
                        lease,
                        machine: self.machine.clone(),
                    })
                    .await?;
                self.register_owner(&info, lease);
                handle.state().owner = Some(info.id);
                InstanceView {
                    owner: Some(info.id),
                    ..InstanceView::default()
                }
            }
            (Command::DeleteOwner, Some((owner, _))) => {
                self.provider.delete_owner(owner).await?;
                self.mark_deleted(owner);
                self.free_handle(handle);
                InstanceView {
                    owner: Some(owner),
                    ..InstanceView::default()
                }
            }
            (Command::Load(l), Some((owner, _))) => {
                let instance = b
                    .instance
                    .ok_or_else(|| StoreError::invalid("Load needs an instance"))?;
                let target = LoadTarget::Id {
                    instance,
                    accept_uninitialized: l.accept_uninitialized,
                };
                match b.lock_version {
                    Some(held) => {
                        let request = LoadRequest {
                            target,
                            held_version: Some(held),
                            busy: Vec::new(),
                            guards,
                        };
                        let snap = self.provider.load(owner, request).await;
                        self.bind_result(handle, owner, snap)?
                    }
                    None => {
                        self.claim(owner, instance, handle.id).await?;
                        let snap = self
                            .with_lock_retry(deadline, || {
                                let request = LoadRequest {
                                    target: target.clone(),
                                    held_version: None,
                                    busy: Vec::new(),
                                    guards,
                                };
                                self.provider.load(owner, request)
                            })
                            .await;
                        if snap.is_err() {
                            self.unclaim(owner, instance, handle.id);
                        }
                        self.bind_result(handle, owner, snap)?
                    }
                }
            }
            (Command::LoadByKey(l), Some((owner, _))) => {
                let target = LoadTarget::Key {
                    key: l.key,
                    accept_uninitialized: l.accept_uninitialized,
                    create_with_id: l.create_with_id,
                    keys_to_associate: l.keys_to_associate.clone(),
                };
                let snap = loop {
                    let attempt = self
                        .with_lock_retry(deadline, || {
                            let request = LoadRequest {
                                target: target.clone(),
                                held_version: None,
                                busy: self.busy(owner, handle.id),
                                guards,
                            };
                            self.provider.load(owner, request)
                        })
                        .await;
                    match attempt {
                        // Our own freed handle's lock, still being released: take it over.
                        Err(StoreError::HandleConflict { instance })
                            if self.is_releasing(owner, instance) =>
                        {
                            self.claim(owner, instance, handle.id).await?;
                            self.unclaim(owner, instance, handle.id);
                        }
                        Ok(snap) => {
                            self.claim_found(owner, snap.instance, handle.id)?;
                            break Ok(snap);
                        }
                        Err(e) => break Err(e),
                    }
                };
                self.bind_result(handle, owner, snap)?
            }
            (Command::Save(s), Some((owner, _))) => {
                let instance = b
                    .instance
                    .ok_or_else(|| StoreError::invalid("Save needs an instance"))?;
                if b.lock_version.is_none() {
                    self.claim(owner, instance, handle.id).await?;
                }
                let request = SaveRequest {
                    instance,
                    held_version: b.lock_version,
                    busy: Vec::new(),
                    save: s.clone(),
                    rules: SaveRules {
                        max_payload_bytes: self.settings.max_payload_bytes,
                        encoding: self.settings.encoding,
                        completion: self.settings.completion,
                    },
                };
                let snap = self.provider.save(owner, request).await;
                match snap {
                    Ok(snap) if !snap.locked => {
                        // Unlocked (or completed): the lock is released in storage already.
                        self.unclaim(owner, instance, handle.id);
                        {
                            let mut hb = handle.state();
                            hb.lock_version = None;
                        }
                        self.free_handle(handle);
                        view_of(owner, &snap, false)
                    }
                    other => {
                        if other.is_err() && b.lock_version.is_none() {
                            self.unclaim(owner, instance, handle.id);
                        }
                        self.bind_result(handle, owner, other)?
                    }
                }
            }
            (Command::TryLoadRunnable, Some((owner, ctx))) => {
                let host_type = ctx.host_type.ok_or(StoreError::HostTypeRequired)?;
                let seq = self.signal_seq(owner);
                match self
                    .provider
                    .try_load_runnable(owner, &host_type, guards)
                    .await?
                {
                    None => {
                        self.reset_signal(owner, seq);
                        self.rescan.notify_one();
                        InstanceView {
                            owner: Some(owner),
                            ..InstanceView::default()
                        }
                    }
                    Some(snap) => {
                        self.claim_found(owner, snap.instance, handle.id)?;
                        self.bind_result(handle, owner, Ok(snap))?
                    }
                }
            }
            (Command::QueryActivatable, Some((owner, _))) => {
                let activatable = self.provider.activatable().await?;
                InstanceView {
                    owner: Some(owner),
                    activatable,
                    ..InstanceView::default()
                }
            }
            (Command::Custom(c), _) => {
                let mut answer = None;
                for ext in &self.extensions {
                    if let Some(r) = ext.execute(&ctx, c).await {
                        answer = Some(r);
                        break;
                    }
                }
                answer.unwrap_or_else(|| {
                    Err(StoreError::CommandNotSupported {
                        command: c.name.clone(),
                    })
                })?
            }
            (other, None) => {
                return Err(StoreError::invalid(format!(
                    "{} needs a handle bound to an owner",
                    other.name()
                )));
            }
        };
        for ext in &self.extensions {
            ext.after(&ctx, &command, &view);
        }
        Ok(view)
    }

    /// Binds the handle to a loaded/saved instance, or handles a lost lock.
    fn bind_result(
        self: &Arc<Self>,
        handle: &HandleShared,
        owner: OwnerId,
        snap: Result<InstanceSnapshot, StoreError>,
    ) -> Result<InstanceView, StoreError> {
        match snap {
            Ok(snap) => {
                {
                    let mut b = handle.state();
                    b.instance = Some(snap.instance);
                    b.lock_version = snap.locked.then_some(snap.lock_version);
                }
                Ok(view_of(owner, &snap, snap.locked))
            }
            Err(StoreError::LockLost { instance }) => {
                self.unclaim(owner, instance, handle.id);
                handle.state().lock_version = None;
                self.free_handle(handle);
                Err(StoreError::LockLost { instance })
            }
            Err(StoreError::OwnerLost { owner }) => {
                self.mark_lost(owner);
                Err(StoreError::OwnerLost { owner })
            }
            // Other owners see only the holder's readable metadata.
            Err(StoreError::InstanceLocked {
                instance,
                owner,
                owner_metadata,
            }) => Err(StoreError::InstanceLocked {
                instance,
                owner,
                owner_metadata: readable(&owner_metadata),
            }),
            Err(e) => Err(e),
        }
    }

    /// Runs an acquiring load under the store's lock-retry policy (SPEC §5): retries on
    /// `InstanceLocked` until the next wait would pass the deadline, then returns the last
    /// `InstanceLocked`.
    async fn with_lock_retry<F, Fut>(
        &self,
        deadline: Timestamp,
        mut attempt: F,
    ) -> Result<InstanceSnapshot, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<InstanceSnapshot, StoreError>>,
    {
        let mut wait = match self.settings.lock_retry {
            LockRetry::NoRetry => return attempt().await,
            LockRetry::BasicRetry => Duration::from_secs(5),
            LockRetry::AggressiveRetry => Duration::from_millis(100),
        };
        loop {
            match attempt().await {
                Err(e @ StoreError::InstanceLocked { .. }) => {
                    if self.clock.now().plus(wait) > deadline || !self.sleep(wait).await {
                        return Err(e);
                    }
                    if self.settings.lock_retry == LockRetry::AggressiveRetry {
                        let growth: f64 = rand::thread_rng().gen_range(1.5..2.5);
                        wait = wait.mul_f64(growth).min(Duration::from_secs(10));
                    }
                }
                other => return other,
            }
        }
    }
}

/// The view of a snapshot: write-only values left out.
fn view_of(owner: OwnerId, snap: &InstanceSnapshot, locked: bool) -> InstanceView {
    InstanceView {
        owner: Some(owner),
        instance: Some(snap.instance),
        state: snap.state,
        lock_version: locked.then_some(snap.lock_version),
        data: readable(&snap.data),
        metadata: readable(&snap.metadata),
        keys: snap
            .keys
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    KeyView {
                        state: v.state,
                        metadata: readable(&v.metadata),
                    },
                )
            })
            .collect(),
        status: Some(snap.status),
        timer: snap.timer,
        bookmarks: snap.bookmarks.clone(),
        suspension: snap.suspension.clone(),
        host_type: snap.host_type.clone(),
        activatable: Vec::new(),
    }
}
