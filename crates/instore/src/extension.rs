//! Extensions add semantics to commands (SPEC §9), like the original's persistence
//! participants: a value registered on the store that sees each command before and after it
//! runs, may reject it, may add effects that run in the same transaction, and may provide its
//! own commands.

use std::fmt::Debug;

use crate::{Command, CustomCommand, InstanceId, InstanceView, LoadGuards, OwnerId, StoreError};

/// What an extension knows about the handle a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandContext {
    /// The handle's owner.
    pub owner: Option<OwnerId>,
    /// The handle's instance.
    pub instance: Option<InstanceId>,
    /// The lock epoch if the handle holds the lock.
    pub lock_version: Option<u64>,
}

/// A store extension.
#[async_trait::async_trait]
pub trait Extension: Debug + Send + Sync + 'static {
    /// The extension's name (for messages).
    fn name(&self) -> &str;

    /// Sees a validated command before it reaches storage. Returning an error rejects it (nothing
    /// happens). It may change the command — for instance push metadata changes onto a `Save`,
    /// which then run in the same transaction — and set guards the provider checks atomically.
    fn before(
        &self,
        ctx: &CommandContext,
        command: &mut Command,
        guards: &mut LoadGuards,
    ) -> Result<(), StoreError> {
        let _ = (ctx, command, guards);
        Ok(())
    }

    /// Sees a command that succeeded, with its view.
    fn after(&self, ctx: &CommandContext, command: &Command, view: &InstanceView) {
        let _ = (ctx, command, view);
    }

    /// Executes a custom command if this extension provides it; `None` if it does not.
    async fn execute(
        &self,
        ctx: &CommandContext,
        command: &CustomCommand,
    ) -> Option<Result<InstanceView, StoreError>> {
        let _ = (ctx, command);
        None
    }
}

/// The built-in suspension extension: loads of a suspended instance fail with
/// `InstanceSuspended` unless they say `allow_suspended`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SuspensionExtension;

impl Extension for SuspensionExtension {
    fn name(&self) -> &str {
        "suspension"
    }

    fn before(
        &self,
        _ctx: &CommandContext,
        command: &mut Command,
        guards: &mut LoadGuards,
    ) -> Result<(), StoreError> {
        guards.reject_suspended = match command {
            Command::Load(l) => !l.allow_suspended,
            Command::LoadByKey(l) => !l.allow_suspended,
            Command::TryLoadRunnable => true,
            _ => guards.reject_suspended,
        };
        Ok(())
    }
}
