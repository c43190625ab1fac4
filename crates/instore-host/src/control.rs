//! The host's control endpoint (SPEC §10, §11): applies Suspend / Resume / Terminate / Cancel to
//! an instance this host runs, and persists the effect before answering.
//!
//! A command for an instance whose step is under way waits for that step and is folded into its
//! save (Suspend suspends it, Terminate completes it as terminated, Cancel runs the cancellation
//! logic on the step's result). A command for any other instance loads it (allowing a
//! suspended one) through the host's owner without a host type and saves the effect: Cancel runs
//! the workflow's cancellation logic right there.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::Instrument;

use instore::{ControlCommand, InstanceId, Load, PropertyBag, StoreError};
use instore_management::{store_level_save, ControlEndpoint};

use crate::host::HostInner;
use crate::runner::Loaded;

/// The control endpoint of one host.
#[derive(Debug)]
pub(crate) struct HostControl {
    host: Weak<HostInner>,
}

impl HostControl {
    pub(crate) fn new(host: Weak<HostInner>) -> Self {
        HostControl { host }
    }
}

#[async_trait::async_trait]
impl ControlEndpoint for HostControl {
    async fn execute(
        &self,
        instance: InstanceId,
        command: &ControlCommand,
        _metadata: &PropertyBag,
    ) -> Result<(), StoreError> {
        let host = self
            .host
            .upgrade()
            .ok_or_else(|| StoreError::invalid("the host has stopped"))?;
        let span = tracing::info_span!("control", %instance, command = command.name());
        host.control(instance, command).instrument(span).await
    }
}

impl HostInner {
    async fn control(
        self: &Arc<Self>,
        instance: InstanceId,
        command: &ControlCommand,
    ) -> Result<(), StoreError> {
        if *command == ControlCommand::Delete {
            return Err(StoreError::CommandNotSupported {
                command: "Delete".into(),
            });
        }
        let clock = self.store.clock();
        let deadline = clock.now().plus(self.timeout());
        loop {
            // A step under way: its save applies the command.
            let waiting = {
                let mut running = self.running_map();
                running.get_mut(&instance).map(|r| {
                    let (tx, rx) = oneshot::channel();
                    r.waiting.push((command.clone(), tx));
                    rx
                })
            };
            if let Some(rx) = waiting {
                return rx
                    .await
                    .unwrap_or_else(|_| Err(StoreError::invalid("the step ended without a save")));
            }
            match self.control_by_load(instance, command).await {
                // Held by one of this host's own handles: a step is about to start or its save
                // is on its way. Look again shortly.
                Err(StoreError::HandleConflict { .. }) => {}
                Err(StoreError::InstanceLocked { owner, .. }) if self.is_own(owner) => {}
                other => return other,
            }
            if clock.now() >= deadline {
                return Err(StoreError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn control_by_load(
        self: &Arc<Self>,
        instance: InstanceId,
        command: &ControlCommand,
    ) -> Result<(), StoreError> {
        let owner = self
            .owner(None)
            .ok_or_else(|| StoreError::invalid("the host has no owner"))?;
        let handle = self.store.create_handle_for(Some(owner), Some(instance));
        let load = Load {
            accept_uninitialized: false,
            allow_suspended: true,
        };
        let view = self.store.execute(&handle, load, self.timeout()).await?;
        if matches!(command, ControlCommand::Cancel) {
            let ours = view
                .host_type
                .as_deref()
                .is_some_and(|h| self.workflows.contains_key(h));
            if ours {
                let loaded = Loaded {
                    handle,
                    view,
                    trigger: None,
                    from_runnable: false,
                };
                return self.run_loaded(loaded, true).await;
            }
            // Not a host type of this host: leave the request for a host of its type, as the
            // management service does at the store level.
        }
        let save =
            store_level_save(command, view).ok_or_else(|| StoreError::CommandNotSupported {
                command: "Delete".into(),
            })?;
        self.store.execute(&handle, save, self.timeout()).await?;
        Ok(())
    }
}
