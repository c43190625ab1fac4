//! Running one step of a loaded instance and persisting its result in one save, with the
//! control commands that arrived for it meanwhile folded in.

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{field, Instrument};

use instore::{
    ExceptionInfo, ExecutionStatus, InstanceHandle, InstanceState, InstanceView, MetadataChange,
    Save, StoreError, SuspendChange, Value,
};
use instore_management::{CANCEL_REQUESTED, TERMINATION_REASON};

use crate::host::HostInner;
use crate::metrics as m;
use crate::workflow::{Context, Fault, Step, Timer, Trigger, Workflow};

/// Reason recorded with the suspension of a faulted instance.
pub const FAULT_REASON: &str = "unhandled exception";

/// A loaded, locked instance about to run a step.
pub(crate) struct Loaded {
    pub(crate) handle: InstanceHandle,
    pub(crate) view: InstanceView,
    /// `None`: judged from the view (timer due → `Timer`, else `Runnable`).
    pub(crate) trigger: Option<Trigger>,
    /// Taken by `TryLoadRunnable` (timer lateness is measured for these).
    pub(crate) from_runnable: bool,
}

/// A control command waiting for the save of the step under way, and where to answer.
pub(crate) type Waiting = (
    instore::ControlCommand,
    oneshot::Sender<Result<(), StoreError>>,
);

/// An instance with a step under way on this host.
#[derive(Debug, Default)]
pub(crate) struct Running {
    pub(crate) waiting: Vec<Waiting>,
}

/// What the save will do.
enum Plan {
    Idle {
        timer: Option<Timer>,
        bookmarks: Vec<String>,
    },
    Completed(ExecutionStatus),
    Faulted(Fault),
}

impl HostInner {
    /// Runs the step of a loaded instance (its cancellation logic if a cancellation was
    /// requested, or `force_cancel`), applies the control commands that arrived meanwhile, and
    /// saves. The handle is used up (unlocked, completed, or freed).
    pub(crate) async fn run_loaded(
        self: &Arc<Self>,
        loaded: Loaded,
        force_cancel: bool,
    ) -> Result<(), StoreError> {
        let Loaded {
            handle,
            view,
            trigger,
            from_runnable,
        } = loaded;
        let instance = view
            .instance
            .ok_or_else(|| StoreError::invalid("a loaded view without an instance"))?;
        let host_type = view.host_type.clone().unwrap_or_default();
        let Some(workflow) = self.workflows.get(&host_type).cloned() else {
            // Not ours (a host type this host does not run): leave it alone.
            handle.free();
            return Err(StoreError::invalid(format!(
                "no workflow for host type '{host_type}' on this host"
            )));
        };
        self.running_map().insert(instance, Running::default());
        let now = self.store.clock().now();
        let timer_fired = view.timer.is_some_and(|due| due <= now);
        if let (true, true, Some(due)) = (from_runnable, timer_fired, view.timer) {
            m::timer_lateness(&host_type, now.since(due));
        }
        let trigger = trigger.unwrap_or(if timer_fired {
            Trigger::Timer
        } else {
            Trigger::Runnable
        });
        let cancel_requested = force_cancel
            || matches!(
                view.metadata.get(CANCEL_REQUESTED).map(|v| &v.value),
                Some(Value::Bool(true))
            );
        let cx = Context {
            instance,
            host_type: host_type.clone(),
            now,
            lock_version: view.lock_version.unwrap_or_default(),
            trigger,
            timer_fired,
            cancel_requested,
            waiting_on: view.bookmarks.clone(),
            data: view.data.clone(),
            keys: Vec::new(),
        };
        let span = tracing::info_span!(
            "step",
            %host_type,
            %instance,
            trigger = ?cx.trigger,
            cancel = cancel_requested,
            outcome = field::Empty,
        );
        self.step_and_save(handle, view, cx, workflow)
            .instrument(span)
            .await
    }

    async fn step_and_save(
        self: &Arc<Self>,
        handle: InstanceHandle,
        view: InstanceView,
        cx: Context,
        workflow: Arc<dyn Workflow>,
    ) -> Result<(), StoreError> {
        let instance = cx.instance;
        let host_type = cx.host_type.clone();
        let cancel = cx.cancel_requested;
        let (mut cx, mut plan) = run_workflow(workflow.clone(), cx, cancel).await;
        // Commands that arrived during the step; later ones take the load path (and wait for
        // this save to release the lock).
        let waiting = self
            .running_map()
            .remove(&instance)
            .map(|r| r.waiting)
            .unwrap_or_default();
        let mut suspend = SuspendChange::Unchanged;
        let mut termination: Option<String> = None;
        for (command, _) in &waiting {
            match command {
                instore::ControlCommand::Suspend { reason } => {
                    suspend = SuspendChange::Suspend {
                        reason: reason.clone(),
                        exception: None,
                    }
                }
                instore::ControlCommand::Terminate { reason } => termination = Some(reason.clone()),
                instore::ControlCommand::Cancel
                    if matches!(plan, Plan::Idle { .. }) && termination.is_none() =>
                {
                    cx.cancel_requested = true;
                    (cx, plan) = run_workflow(workflow.clone(), cx, true).await;
                }
                _ => {}
            }
        }
        if let Some(reason) = &termination {
            plan = Plan::Completed(ExecutionStatus::Terminated);
            suspend = SuspendChange::Unchanged;
            let _ = reason;
        }
        let outcome = match &plan {
            Plan::Idle { .. } if matches!(suspend, SuspendChange::Suspend { .. }) => "suspended",
            Plan::Idle { .. } => "idle",
            Plan::Completed(ExecutionStatus::Canceled) => "canceled",
            Plan::Completed(ExecutionStatus::Terminated) => "terminated",
            Plan::Completed(_) => "completed",
            Plan::Faulted(_) => "faulted",
        };
        tracing::Span::current().record("outcome", outcome);
        let save = self.save_of(&view, cx, plan, suspend, termination);
        let result = self.store.execute(&handle, save, self.timeout()).await;
        let result = match result {
            Ok(_) => {
                m::step(&host_type, outcome);
                Ok(())
            }
            Err(e) if !handle.is_freed() => {
                // The result could not be saved (a key of another instance, too large, ...):
                // suspend with the error as the fault, keeping the last saved state.
                tracing::warn!(error = %e, "the step's save failed; suspending the instance");
                m::step(&host_type, "faulted");
                let fault = Fault::new(format!("instore::{}", e.code()), e.to_string());
                let cx = Context {
                    data: view.data.clone(),
                    keys: Vec::new(),
                    ..context_of(&view)
                };
                let save = self.save_of(
                    &view,
                    cx,
                    Plan::Faulted(fault),
                    SuspendChange::Unchanged,
                    None,
                );
                self.store
                    .execute(&handle, save, self.timeout())
                    .await
                    .map(|_| ())
                    .map_err(|_| e)
            }
            Err(e) => {
                m::step(&host_type, "lost");
                Err(e)
            }
        };
        for (_, reply) in waiting {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(copy_error));
        }
        result
    }

    fn save_of(
        &self,
        view: &InstanceView,
        cx: Context,
        plan: Plan,
        suspend: SuspendChange,
        termination: Option<String>,
    ) -> Save {
        let mut metadata_changes = Vec::new();
        let clear_cancel = view.metadata.contains_key(CANCEL_REQUESTED);
        if clear_cancel && !matches!(plan, Plan::Faulted(_)) {
            metadata_changes.push((CANCEL_REQUESTED.to_owned(), MetadataChange::Deleted));
        }
        if let Some(reason) = termination.filter(|r| !r.is_empty()) {
            metadata_changes.push((
                TERMINATION_REASON.to_owned(),
                MetadataChange::Set(Value::String(reason).into()),
            ));
        }
        // Completion and cancellation clear a suspension (the control path loads suspended
        // instances).
        let unsuspend = if view.suspension.is_some() {
            SuspendChange::Unsuspend
        } else {
            SuspendChange::Unchanged
        };
        let keys_to_associate = cx.keys.iter().map(|k| (*k).into()).collect();
        match plan {
            Plan::Idle { timer, bookmarks } => {
                let now = self.store.clock().now();
                let timer = timer.map(|t| match t {
                    Timer::In(d) => now.plus(d),
                    Timer::At(at) => at,
                });
                Save {
                    data: Some(cx.data),
                    metadata_changes,
                    keys_to_associate,
                    timer,
                    status: ExecutionStatus::Idle,
                    bookmarks,
                    suspend: match suspend {
                        SuspendChange::Unchanged => unsuspend,
                        s => s,
                    },
                    ..Save::default()
                }
                .and_unlock()
            }
            Plan::Completed(status) => Save {
                data: Some(cx.data),
                metadata_changes,
                keys_to_associate,
                status,
                suspend: unsuspend,
                ..Save::default()
            }
            .and_complete(),
            Plan::Faulted(fault) => {
                let suspend = SuspendChange::Suspend {
                    reason: FAULT_REASON.to_owned(),
                    exception: Some(ExceptionInfo {
                        name: fault.name,
                        message: fault.message,
                    }),
                };
                if view.state == InstanceState::Initialized {
                    // The last saved state stays: resuming runs the step again.
                    Save {
                        metadata_changes,
                        suspend,
                        ..Save::default()
                    }
                    .and_unlock()
                } else {
                    // Never saved (its first step faulted): save the initial data, runnable
                    // once resumed.
                    Save {
                        data: Some(view.data.clone()),
                        metadata_changes,
                        status: ExecutionStatus::Executing,
                        suspend,
                        ..Save::default()
                    }
                    .and_unlock()
                }
            }
        }
    }
}

/// The context a view gives, for re-saving it.
fn context_of(view: &InstanceView) -> Context {
    Context {
        instance: view.instance.unwrap_or_default(),
        host_type: view.host_type.clone().unwrap_or_default(),
        now: instore::Timestamp::from_micros(0),
        lock_version: view.lock_version.unwrap_or_default(),
        trigger: Trigger::Runnable,
        timer_fired: false,
        cancel_requested: false,
        waiting_on: view.bookmarks.clone(),
        data: view.data.clone(),
        keys: Vec::new(),
    }
}

/// Runs the workflow's step (or its cancellation logic) on a task of its own, so a panic
/// becomes a fault instead of taking the host down.
async fn run_workflow(workflow: Arc<dyn Workflow>, cx: Context, cancel: bool) -> (Context, Plan) {
    let before = cx.clone();
    let task = tokio::spawn(async move {
        let mut cx = cx;
        let result = if cancel {
            workflow.on_cancel(&mut cx).await
        } else {
            workflow.step(&mut cx).await
        };
        (cx, result)
    });
    match task.await {
        Ok((cx, Ok(Step::Idle { timer, bookmarks }))) => (cx, Plan::Idle { timer, bookmarks }),
        Ok((cx, Ok(Step::Completed { outcome }))) => (cx, Plan::Completed(outcome.status())),
        Ok((_, Err(fault))) => (before, Plan::Faulted(fault)),
        Err(join) => {
            let message = match join.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the step panicked".to_owned()),
                Err(_) => "the step was cancelled".to_owned(),
            };
            (before, Plan::Faulted(Fault::new("panic", message)))
        }
    }
}

/// A copy of a store error for each waiting control command (errors are not `Clone`): the
/// variants a caller acts on keep their kind, the rest become a transient storage error with
/// the message.
pub(crate) fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::LockLost { instance } => StoreError::LockLost {
            instance: *instance,
        },
        StoreError::InstanceComplete { instance } => StoreError::InstanceComplete {
            instance: *instance,
        },
        StoreError::OwnerLost { owner } => StoreError::OwnerLost { owner: *owner },
        StoreError::Timeout => StoreError::Timeout,
        other => StoreError::Storage(instore::StorageError::unavailable(format!(
            "{}: {other}",
            other.code()
        ))),
    }
}
