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
    KeyView, LoadGuards, LockRetry, OwnerId, StoreError, Timestamp,
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
        let label = metric_label(&command);
        let span = tracing::debug_span!("command", command = label, instance = ?binding.instance);
        let started = std::time::Instant::now();
        let result = tokio::select! {
            biased;
            r = tracing::Instrument::instrument(self.run(shared, binding, command, deadline), span) => r,
            _ = self.clock.sleep_until(deadline) => Err(StoreError::Timeout),
        };
        record_metrics(label, started, &result);
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
        let dispatched = match (&command, owner_ctx) {
            (Command::CreateOwner(c), _) => self.create_owner(handle, c).await,
            (Command::DeleteOwner, Some((owner, _))) => self.delete_owner(handle, owner).await,
            (Command::Load(l), Some((owner, _))) => {
                self.load(handle, b, owner, l, guards, deadline).await
            }
            (Command::LoadByKey(l), Some((owner, _))) => {
                self.load_by_key(handle, owner, l, guards, deadline).await
            }
            (Command::Save(s), Some((owner, _))) => self.save(handle, b, owner, s).await,
            (Command::TryLoadRunnable, Some((owner, ctx))) => {
                self.try_load_runnable(handle, owner, &ctx, guards).await
            }
            (Command::QueryActivatable, Some((owner, _))) => self.query_activatable(owner).await,
            (Command::Custom(c), _) => self.custom(&ctx, c).await,
            (other, None) => Err(StoreError::invalid(format!(
                "{} needs a handle bound to an owner",
                other.name()
            ))),
        };
        let view = match dispatched {
            Ok(view) => view,
            // Whatever command learned it, the owner is lost from now on.
            Err(StoreError::OwnerLost { owner }) => {
                self.mark_lost(owner);
                return Err(StoreError::OwnerLost { owner });
            }
            Err(e) => return Err(e),
        };
        for ext in &self.extensions {
            ext.after(&ctx, &command, &view);
        }
        Ok(view)
    }

    /// Binds the handle to a loaded/saved instance, or handles a lost lock.
    pub(super) fn bind_result(
        self: &Arc<Self>,
        handle: &HandleShared,
        owner: OwnerId,
        snap: Result<InstanceSnapshot, StoreError>,
    ) -> Result<InstanceView, StoreError> {
        match snap {
            Ok(snap) => {
                let bound = {
                    let mut b = handle.state();
                    if !b.freed {
                        b.instance = Some(snap.instance);
                        b.lock_version = snap.locked.then_some(snap.lock_version);
                    }
                    !b.freed
                };
                if bound && snap.locked {
                    self.confirm_held(owner, snap.instance, handle.id);
                }
                if bound || !snap.locked {
                    return Ok(view_of(owner, &snap, snap.locked && bound));
                }
                // The handle was freed while the command ran: the lock it took has no holder.
                self.release(owner, snap.instance, handle.id);
                Ok(view_of(owner, &snap, false))
            }
            Err(StoreError::LockLost { instance }) => {
                self.unclaim(owner, instance, handle.id);
                handle.state().lock_version = None;
                self.free_handle(handle);
                Err(StoreError::LockLost { instance })
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
    pub(super) async fn with_lock_retry<F, Fut>(
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
            // Retries keep their cadence from the start of each attempt, however long the
            // attempt itself took.
            let started = self.clock.now();
            match attempt().await {
                Err(e @ StoreError::InstanceLocked { .. }) => {
                    let next = started.plus(wait);
                    if next > deadline || !self.sleep_until(next).await {
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

/// The `command` label of a command's metrics: its name, with every custom command as `Custom`
/// (their names are the caller's and would grow the label set without bound).
fn metric_label(command: &Command) -> &'static str {
    match command {
        Command::CreateOwner(_) => "CreateOwner",
        Command::DeleteOwner => "DeleteOwner",
        Command::Load(_) => "Load",
        Command::LoadByKey(_) => "LoadByKey",
        Command::Save(_) => "Save",
        Command::TryLoadRunnable => "TryLoadRunnable",
        Command::QueryActivatable => "QueryActivatable",
        Command::Custom(_) => "Custom",
    }
}

/// Records a command's latency and, if another owner held the lock, a lock conflict, through
/// the `metrics` facade (a no-op unless the process installed a recorder, as `instore serve`
/// does): `instore_command_duration_seconds{command}` and `instore_lock_conflicts_total{command}`.
fn record_metrics(
    label: &'static str,
    started: std::time::Instant,
    result: &Result<InstanceView, StoreError>,
) {
    metrics::histogram!("instore_command_duration_seconds", "command" => label)
        .record(started.elapsed().as_secs_f64());
    if matches!(result, Err(StoreError::InstanceLocked { .. })) {
        metrics::counter!("instore_lock_conflicts_total", "command" => label).increment(1);
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
