//! Executing one queued command (SPEC §10): through the holder's control endpoint if it
//! registered one this service can reach, else at the store level as the service's own owner;
//! then reporting the outcome to the queue.
//!
//! Store-level effects, each one `Load { allow_suspended }` by id and one `Save`:
//!
//! | command | save |
//! |---|---|
//! | `Suspend { reason }` | metadata-only: `Suspend { reason }`, unlock |
//! | `Resume` | metadata-only: `Unsuspend`, unlock (runnable again if `Executing` or timed) |
//! | `Terminate { reason }` | the loaded data again with status `Terminated`, no timer or bookmarks, `Unsuspend`, [`TERMINATION_REASON`], complete |
//! | `Cancel` | the loaded data, timer and bookmarks again with status `Executing`, [`CANCEL_REQUESTED`], `Unsuspend`, unlock: runnable, so a host of its type runs its cancellation logic |
//!
//! A save can only set the execution status together with data, and a view carries no
//! write-only values, so `Terminate` and `Cancel` at the store level drop the instance's
//! write-only data values (decision 0009). An uninitialized instance cannot be loaded without
//! creating it, so commands for one fail with `instance_not_ready`.

use std::error::Error;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{field, Instrument};

use instore::{
    CommandFailure, ControlCommand, ControlProvider, ExecutionStatus, InstanceStore, InstanceView,
    Load, MetadataChange, QueueSettings, QueuedCommand, Save, StoreError, SuspendChange, Timestamp,
    Value,
};

use crate::endpoint::{named_endpoint, EndpointResolver};
use crate::owner::ServiceOwner;
use crate::stats::{Counter, ServiceStats};
use crate::ManagementSettings;

/// Instance metadata entry (bool `true`) a store-level `Cancel` sets: the host that loads the
/// instance next runs its cancellation logic, and removes the entry.
pub const CANCEL_REQUESTED: &str = "instore:cancel_requested";

/// Instance metadata entry (string) a store-level `Terminate` with a reason sets.
pub const TERMINATION_REASON: &str = "instore:termination_reason";

/// What every command task shares.
#[derive(Debug)]
pub(crate) struct Executor {
    pub(crate) store: InstanceStore,
    pub(crate) control: Arc<dyn ControlProvider>,
    pub(crate) queue: QueueSettings,
    pub(crate) settings: ManagementSettings,
    pub(crate) endpoints: Arc<dyn EndpointResolver>,
    pub(crate) owner: ServiceOwner,
    pub(crate) machine: String,
    pub(crate) stats: Arc<ServiceStats>,
    /// Wakes the reader: a failed command is about to be readable again.
    pub(crate) nudge: Arc<Notify>,
}

impl Executor {
    /// Executes `command` and reports the outcome. `stop` only shortens a retry delay; an
    /// execution under way runs to its end.
    pub(crate) async fn run(self: Arc<Self>, command: QueuedCommand, stop: CancellationToken) {
        let span = tracing::info_span!(
            "control_command",
            instance = %command.instance,
            command = command.command.name(),
            attempt = command.attempts + 1,
            via = field::Empty,
        );
        async move {
            match self.execute(&command).await {
                // Deleting removed the queued command with the instance: nothing to complete.
                Ok(()) if command.command == ControlCommand::Delete => {
                    self.stats.add(Counter::Completed, 1)
                }
                Ok(()) => self.report_success(&command).await,
                Err(e) => self.report_failure(&command, e, &stop).await,
            }
        }
        .instrument(span)
        .await
    }

    async fn execute(&self, command: &QueuedCommand) -> Result<(), StoreError> {
        if command.command == ControlCommand::Delete {
            // Never queued (the provider deletes at once); if one is read anyway, do it.
            tracing::Span::current().record("via", "delete");
            return match self.control.delete(command.instance).await {
                Ok(()) | Err(StoreError::InstanceNotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            };
        }
        if let Some(name) = named_endpoint(&command.metadata) {
            if let Some(endpoint) = self.endpoints.resolve(name) {
                tracing::Span::current().record("via", "endpoint");
                let call = endpoint.execute(command.instance, &command.command, &command.metadata);
                let result = self.within_timeout(call).await;
                if result.is_ok() {
                    self.stats.add(Counter::ViaEndpoint, 1);
                }
                return result;
            }
            tracing::debug!(
                endpoint = name,
                "the holder's control endpoint is not reachable from here; executing at the store level"
            );
        }
        tracing::Span::current().record("via", "store");
        self.execute_at_store(command).await
    }

    async fn within_timeout(
        &self,
        call: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let clock = self.store.clock();
        let deadline = clock.now().plus(self.settings.command_timeout);
        tokio::select! {
            r = call => r,
            _ = clock.sleep_until(deadline) => Err(StoreError::Timeout),
        }
    }

    async fn execute_at_store(&self, command: &QueuedCommand) -> Result<(), StoreError> {
        let timeout = self.settings.command_timeout;
        let owner = self.owner.get(timeout).await?;
        let result = self.load_and_save(owner, command).await;
        if let Err(StoreError::OwnerLost { owner }) = &result {
            self.owner.lost(*owner);
        }
        result
    }

    async fn load_and_save(
        &self,
        owner: instore::OwnerId,
        command: &QueuedCommand,
    ) -> Result<(), StoreError> {
        let timeout = self.settings.command_timeout;
        let handle = self
            .store
            .create_handle_for(Some(owner), Some(command.instance));
        let load = Load {
            accept_uninitialized: false,
            allow_suspended: true,
        };
        let view = self.store.execute(&handle, load, timeout).await?;
        let save = store_level_save(&command.command, view).ok_or_else(|| {
            StoreError::CommandNotSupported {
                command: "Delete".into(),
            }
        })?;
        self.store.execute(&handle, save, timeout).await?;
        Ok(())
    }

    async fn report_success(&self, command: &QueuedCommand) {
        match self.control.complete(command.instance, command.lock).await {
            Ok(()) => {
                self.stats.add(Counter::Completed, 1);
                tracing::debug!("control command executed");
            }
            Err(e) => self.report_error("complete", e),
        }
    }

    async fn report_failure(
        &self,
        command: &QueuedCommand,
        error: StoreError,
        stop: &CancellationToken,
    ) {
        self.stats.add(Counter::Failed, 1);
        let failures = command.attempts + 1;
        let last = failures >= self.queue.max_attempts;
        let message = chain(&error);
        if last {
            self.stats.add(Counter::GivenUp, 1);
            tracing::warn!(code = error.code(), error = %message, "control command failed for the last time; it goes to the error log");
        } else {
            tracing::info!(code = error.code(), error = %message, "control command failed; it will be retried");
            // Hold it (still locked, so no other service takes it) for the retry delay, but
            // report before its lock could expire: an expired lock counts as a failure of its own.
            let clock = self.store.clock();
            let wanted = clock.now().plus(self.settings.retry_delay_after(failures));
            let latest = command.locked_until.minus(self.queue.lock_time / 4);
            let until: Timestamp = wanted.min(latest);
            tokio::select! {
                _ = clock.sleep_until(until) => {}
                _ = stop.cancelled() => {}
            }
        }
        let failure = CommandFailure {
            code: error.code().to_owned(),
            message,
            machine: self.machine.clone(),
        };
        match self
            .control
            .abandon(command.instance, command.lock, failure, &self.queue)
            .await
        {
            Ok(()) if !last => self.nudge.notify_one(),
            Ok(()) => {}
            Err(e) => self.report_error("abandon", e),
        }
    }

    fn report_error(&self, what: &str, error: StoreError) {
        if let StoreError::CommandLockLost { .. } = error {
            self.stats.add(Counter::LockLost, 1);
            tracing::info!(
                "the command's queue lock expired before its outcome could be recorded ({what}); \
                 the queue counts it as a failed attempt and it will run again"
            );
        } else {
            tracing::warn!(error = %chain(&error), "could not {what} the control command; its queue lock will expire and it will run again");
        }
    }
}

/// An error and its sources, one line (`storage failure: storage unavailable: ...`).
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// The save that executes `command` at the store level on an instance loaded as `view`, locked
/// by the executor (table at the top of this module): Suspend and Resume change the suspension
/// and unlock, Terminate completes with status `Terminated`, Cancel records [`CANCEL_REQUESTED`]
/// and makes the instance runnable. `None` for Delete, which the control provider executes
/// itself. Shared with host runtimes applying a command to an instance they do not run.
pub fn store_level_save(command: &ControlCommand, view: InstanceView) -> Option<Save> {
    let save = match command {
        ControlCommand::Suspend { reason } => Save {
            suspend: SuspendChange::Suspend {
                reason: reason.clone(),
                exception: None,
            },
            unlock: true,
            ..Save::default()
        },
        ControlCommand::Resume => Save {
            suspend: SuspendChange::Unsuspend,
            unlock: true,
            ..Save::default()
        },
        ControlCommand::Terminate { reason } => {
            let mut save = Save {
                data: Some(view.data),
                status: ExecutionStatus::Terminated,
                suspend: SuspendChange::Unsuspend,
                ..Save::default()
            }
            .and_complete();
            if !reason.is_empty() {
                save.metadata_changes.push((
                    TERMINATION_REASON.into(),
                    MetadataChange::Set(Value::String(reason.clone()).into()),
                ));
            }
            save
        }
        ControlCommand::Cancel => Save {
            data: Some(view.data),
            timer: view.timer,
            bookmarks: view.bookmarks,
            status: ExecutionStatus::Executing,
            metadata_changes: vec![(
                CANCEL_REQUESTED.into(),
                MetadataChange::Set(Value::Bool(true).into()),
            )],
            suspend: SuspendChange::Unsuspend,
            unlock: true,
            ..Save::default()
        },
        // The control provider executes it at once (SPEC §10 rule 1); it never reaches a store.
        ControlCommand::Delete => return None,
    };
    Some(save)
}
