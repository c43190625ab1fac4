//! One method per command (SPEC §6): what each does with the provider, the owner's claims and
//! the handle's binding. `execute.rs` has validated the command and checked the owner.

use std::sync::Arc;

use super::claims::Claimed;
use super::handle::{Binding, HandleShared};
use super::owners::OwnerContext;
use super::Inner;
use crate::{
    CommandContext, CreateOwner, CustomCommand, InstanceId, InstanceView, Load, LoadByKey,
    LoadGuards, LoadRequest, LoadTarget, NewOwner, OwnerId, RunnableRequest, Save, SaveRequest,
    SaveRules, StoreError, Timestamp,
};

/// An owner-only view.
fn owner_view(owner: OwnerId) -> InstanceView {
    InstanceView {
        owner: Some(owner),
        ..InstanceView::default()
    }
}

impl Inner {
    pub(super) async fn create_owner(
        self: &Arc<Self>,
        handle: &HandleShared,
        c: &CreateOwner,
    ) -> Result<InstanceView, StoreError> {
        let lease = c.lease.unwrap_or(self.settings.lease);
        let new = NewOwner {
            host_type: c.host_type.clone(),
            metadata: c.metadata.clone(),
            lease,
            machine: self.machine.clone(),
        };
        let info = self.provider.create_owner(new).await?;
        self.register_owner(&info, lease);
        handle.state().owner = Some(info.id);
        Ok(owner_view(info.id))
    }

    pub(super) async fn delete_owner(
        self: &Arc<Self>,
        handle: &HandleShared,
        owner: OwnerId,
    ) -> Result<InstanceView, StoreError> {
        // Deliberate: from here on a renewal or a command seeing the lease end is not a loss.
        self.set_deleting(owner, true);
        if let Err(e) = self.provider.delete_owner(owner).await {
            self.set_deleting(owner, false);
            return Err(e);
        }
        self.mark_deleted(owner);
        self.free_handle(handle);
        Ok(owner_view(owner))
    }

    pub(super) async fn load(
        self: &Arc<Self>,
        handle: &HandleShared,
        b: Binding,
        owner: OwnerId,
        l: &Load,
        guards: LoadGuards,
        deadline: Timestamp,
    ) -> Result<InstanceView, StoreError> {
        let instance = b
            .instance
            .ok_or_else(|| StoreError::invalid("Load needs an instance"))?;
        let target = LoadTarget::Id {
            instance,
            accept_uninitialized: l.accept_uninitialized,
        };
        let request = |held_version| LoadRequest {
            target: target.clone(),
            held_version,
            busy: Vec::new(),
            guards,
        };
        if let Some(held) = b.lock_version {
            let snap = self.provider.load(owner, request(Some(held))).await;
            return self.bind_result(handle, owner, snap);
        }
        let claimed = self.claim(owner, instance, handle.id).await?;
        let snap = self
            .with_lock_retry(deadline, || {
                let (provider, request) = (self.provider.clone(), request(None));
                self.acquiring(owner, handle.id, async move {
                    provider.load(owner, request).await
                })
            })
            .await;
        if snap.is_err() {
            self.abandon(owner, instance, handle.id, claimed);
        }
        self.bind_result(handle, owner, snap)
    }

    pub(super) async fn load_by_key(
        self: &Arc<Self>,
        handle: &HandleShared,
        owner: OwnerId,
        l: &LoadByKey,
        guards: LoadGuards,
        deadline: Timestamp,
    ) -> Result<InstanceView, StoreError> {
        let target = LoadTarget::Key {
            key: l.key,
            accept_uninitialized: l.accept_uninitialized,
            create_with_id: l.create_with_id,
            keys_to_associate: l.keys_to_associate.clone(),
        };
        // A freed handle's lock this command took over while it was being released.
        let mut taken_over: Option<(InstanceId, Claimed)> = None;
        let snap = loop {
            // The `busy` list of the last attempt.
            let mut sent = Vec::new();
            let attempt = self
                .with_lock_retry(deadline, || {
                    let busy = self.busy(owner, handle.id);
                    sent.clone_from(&busy);
                    let request = LoadRequest {
                        target: target.clone(),
                        held_version: None,
                        busy,
                        guards,
                    };
                    let provider = self.provider.clone();
                    self.acquiring(owner, handle.id, async move {
                        provider.load(owner, request).await
                    })
                })
                .await;
            match attempt {
                // The owner's own freed handle's lock, still being released: take it over (or
                // wait for the unlock in flight) and try again.
                Err(StoreError::HandleConflict { instance })
                    if taken_over.is_none() && self.is_releasing(owner, instance) =>
                {
                    taken_over = Some((instance, self.claim(owner, instance, handle.id).await?));
                }
                Ok(snap) => {
                    let in_busy = sent.contains(&snap.instance);
                    match self.claim_found(owner, snap.instance, handle.id, in_busy) {
                        Ok(()) => break Ok(snap),
                        Err(e) => break Err(e),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if let (Err(_), Some((instance, claimed))) = (&snap, taken_over) {
            self.abandon(owner, instance, handle.id, claimed);
        }
        self.bind_result(handle, owner, snap)
    }

    pub(super) async fn save(
        self: &Arc<Self>,
        handle: &HandleShared,
        b: Binding,
        owner: OwnerId,
        s: &Save,
    ) -> Result<InstanceView, StoreError> {
        let instance = b
            .instance
            .ok_or_else(|| StoreError::invalid("Save needs an instance"))?;
        let claimed = match b.lock_version {
            Some(_) => None,
            None => Some(self.claim(owner, instance, handle.id).await?),
        };
        // Unlocking a lock this handle holds: once the save commits, another handle of the owner
        // may be granted the lock before this command returns, and take the claim over.
        let unlocking = b.lock_version.is_some() && s.unlock;
        if unlocking {
            self.set_unlocking(owner, instance, handle.id, true);
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
            promoted: s
                .data
                .as_ref()
                .map(|data| crate::promote(&self.settings.promotions, data)),
        };
        let snap = match claimed {
            // Acquiring: a save cut off after it took the lock must still release it.
            Some(_) => {
                let provider = self.provider.clone();
                self.acquiring(owner, handle.id, async move {
                    provider.save(owner, request).await
                })
                .await
            }
            None => self.provider.save(owner, request).await,
        };
        match (&snap, claimed) {
            (Ok(saved), _) if !saved.locked => {
                // Unlocked (or completed): the lock is released in storage already.
                self.unclaim(owner, instance, handle.id);
                handle.state().lock_version = None;
                self.free_handle(handle);
            }
            (Err(_), Some(claimed)) => self.abandon(owner, instance, handle.id, claimed),
            // Taken over by another handle: this save's unlock committed after all (its answer
            // was lost), or the lock was gone before. Either way this handle holds nothing now.
            // (If the claim is still this handle's, the guard clears its unlocking mark.)
            (Err(_), None)
                if unlocking && !self.set_unlocking(owner, instance, handle.id, false) =>
            {
                handle.state().lock_version = None;
                self.free_handle(handle);
                return Err(StoreError::LockLost { instance });
            }
            _ => {}
        }
        self.bind_result(handle, owner, snap)
    }

    pub(super) async fn try_load_runnable(
        self: &Arc<Self>,
        handle: &HandleShared,
        owner: OwnerId,
        ctx: &OwnerContext,
        guards: LoadGuards,
    ) -> Result<InstanceView, StoreError> {
        let host_type = ctx.host_type.clone().ok_or(StoreError::HostTypeRequired)?;
        let seq = self.signal_seq(owner);
        let request = RunnableRequest {
            host_type,
            guards,
            skip: self.busy(owner, handle.id),
        };
        let provider = self.provider.clone();
        let found = self
            .acquiring(owner, handle.id, async move {
                provider.try_load_runnable(owner, request).await
            })
            .await?;
        match found {
            None => {
                self.reset_signal(owner, seq);
                self.rescan.notify_one();
                Ok(owner_view(owner))
            }
            Some(snap) => {
                // The provider never hands out an instance of `skip`.
                let found = self
                    .claim_found(owner, snap.instance, handle.id, false)
                    .map(|()| snap);
                self.bind_result(handle, owner, found)
            }
        }
    }

    pub(super) async fn query_activatable(
        &self,
        owner: OwnerId,
    ) -> Result<InstanceView, StoreError> {
        let activatable = self.provider.activatable().await?;
        Ok(InstanceView {
            activatable,
            ..owner_view(owner)
        })
    }

    pub(super) async fn custom(
        &self,
        ctx: &CommandContext,
        c: &CustomCommand,
    ) -> Result<InstanceView, StoreError> {
        for ext in &self.extensions {
            if let Some(answer) = ext.execute(ctx, c).await {
                return answer;
            }
        }
        Err(StoreError::CommandNotSupported {
            command: c.name.clone(),
        })
    }
}
