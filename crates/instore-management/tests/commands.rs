//! Each control command executed by the service changes the instance as SPEC §10 says, on the
//! memory and SQLite providers; failures are retried and given up to the error log; a live
//! holder's in-process endpoint receives its commands; shutdown is prompt.

// Test code (clippy's allow-unwrap-in-tests covers #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    handover, Condition, ControlCommand, ExecutionStatus, InstanceState, InstanceStatus, KeyId,
    KeyState, Load, NewKey, PropertyBag, Save, SuspendChange, Suspension, Uuid, Value,
};
use instore_management::{
    owner_metadata, EndpointRegistry, ManagementService, ManagementSettings, CANCEL_REQUESTED,
    ROLE, TERMINATION_REASON,
};

use support::*;

on_each_provider!(
    suspend_persists_the_suspension_and_the_instance_stops_being_runnable,
    resume_clears_the_suspension_and_the_instance_is_runnable_again,
    terminate_completes_the_instance_with_status_terminated,
    cancel_records_the_request_and_makes_the_instance_runnable,
    a_failing_command_is_retried_and_lands_in_the_error_log_after_five_attempts,
    a_live_holders_in_process_endpoint_receives_the_command,
    a_holder_whose_endpoint_is_not_registered_gets_nothing_and_the_command_fails,
    shutdown_stops_the_loop_promptly_and_hands_held_commands_back,
);

fn service(f: &Fixture) -> ManagementService {
    ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(quick())
        .machine("mgmt-test")
        .build()
        .unwrap()
}

fn executing() -> Save {
    Save::data(data())
        .with_status(ExecutionStatus::Executing)
        .and_unlock()
}

async fn runnable_now(f: &Fixture, host_type: &str) -> bool {
    let now = f.store.clock().now();
    f.store
        .provider()
        .next_runnable(host_type)
        .await
        .unwrap()
        .is_some_and(|t| t <= now)
}

async fn suspend_persists_the_suspension_and_the_instance_stops_being_runnable(f: Fixture) {
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let (id, _) = instance(&f.store, owner, executing()).await;
    assert!(runnable_now(&f, "orders").await);

    let running = start(service(&f));
    f.providers
        .control
        .enqueue(
            id,
            ControlCommand::Suspend {
                reason: "audit".into(),
            },
        )
        .await
        .unwrap();
    eventually("the suspension is stored", || async {
        info(&f.providers, id).await.suspension.is_some()
    })
    .await;
    eventually("the command is completed", || queue_is_empty(&f.providers)).await;

    let i = info(&f.providers, id).await;
    assert_eq!(
        i.suspension,
        Some(Suspension {
            reason: "audit".into(),
            exception: None
        })
    );
    assert_eq!(i.status, InstanceStatus::Suspended);
    assert_eq!(i.condition, Condition::UserSuspension);
    assert_eq!(i.owner, None, "the service released its lock");
    assert_eq!(i.updated_by.as_deref(), Some(f.store.machine()));
    assert!(
        !runnable_now(&f, "orders").await,
        "suspended: never runnable"
    );
    assert!(f.providers.control.error_log(10).await.unwrap().is_empty());

    // Data and execution status are untouched (a metadata-only save).
    let h = f.store.create_handle_for(Some(owner), Some(id));
    let view = f
        .store
        .execute(
            &h,
            Load {
                allow_suspended: true,
                ..Load::default()
            },
            T,
        )
        .await
        .unwrap();
    assert_eq!(view.data, data());
    assert_eq!(view.status, Some(ExecutionStatus::Executing));
    // The service's owner is not the store's default owner (the host's is: it came first).
    assert_eq!(f.store.default_owner(), Some(owner));
    running.stop().await;
}

async fn resume_clears_the_suspension_and_the_instance_is_runnable_again(f: Fixture) {
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let suspended = Save {
        suspend: SuspendChange::Suspend {
            reason: "by host".into(),
            exception: None,
        },
        ..executing()
    };
    let (id, _) = instance(&f.store, owner, suspended).await;
    assert!(!runnable_now(&f, "orders").await);

    let running = start(service(&f));
    f.providers
        .control
        .enqueue(id, ControlCommand::Resume)
        .await
        .unwrap();
    eventually("the suspension is cleared", || async {
        info(&f.providers, id).await.suspension.is_none()
    })
    .await;
    eventually("the command is completed", || queue_is_empty(&f.providers)).await;
    let i = info(&f.providers, id).await;
    assert_eq!(i.condition, Condition::Active);
    assert_eq!(i.owner, None);
    assert!(
        runnable_now(&f, "orders").await,
        "Executing and unlocked: runnable"
    );
    running.stop().await;
}

async fn terminate_completes_the_instance_with_status_terminated(f: Fixture) {
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let key = KeyId::derive(Uuid::nil(), &format!("order-{}", Uuid::new_v4()));
    let save = Save {
        keys_to_associate: vec![NewKey::from(key)],
        suspend: SuspendChange::Suspend {
            reason: "stuck".into(),
            exception: None,
        },
        bookmarks: vec!["approve".into()],
        ..Save::data(data()).and_unlock()
    };
    let (id, _) = instance(&f.store, owner, save).await;

    let running = start(service(&f));
    f.providers
        .control
        .enqueue(
            id,
            ControlCommand::Terminate {
                reason: "customer left".into(),
            },
        )
        .await
        .unwrap();
    eventually("the instance completes", || async {
        info(&f.providers, id).await.state == InstanceState::Completed
    })
    .await;
    eventually("the command is completed", || queue_is_empty(&f.providers)).await;

    let i = info(&f.providers, id).await;
    assert_eq!(i.status, InstanceStatus::Completed);
    assert_eq!(i.condition, Condition::Terminated);
    assert_eq!(i.execution_status, ExecutionStatus::Terminated);
    assert_eq!(i.suspension, None, "terminate clears suspension");
    assert_eq!(i.owner, None);
    assert_eq!(i.keys.get(&key), Some(&KeyState::Completed));
    assert_eq!(
        i.metadata.get(TERMINATION_REASON).map(|v| &v.value),
        Some(&Value::String("customer left".into()))
    );
    assert_eq!(i.blocked_on, None);
    running.stop().await;
}

async fn cancel_records_the_request_and_makes_the_instance_runnable(f: Fixture) {
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let later = f.store.clock().now().plus(Duration::from_secs(3600));
    let save = Save {
        bookmarks: vec!["approve".into()],
        suspend: SuspendChange::Suspend {
            reason: "stuck".into(),
            exception: None,
        },
        ..Save::data(data()).with_timer(later).and_unlock()
    };
    let (id, _) = instance(&f.store, owner, save).await;
    assert!(!runnable_now(&f, "orders").await);

    let running = start(service(&f));
    f.providers
        .control
        .enqueue(id, ControlCommand::Cancel)
        .await
        .unwrap();
    eventually("the cancellation is recorded", || async {
        info(&f.providers, id)
            .await
            .metadata
            .contains_key(CANCEL_REQUESTED)
    })
    .await;
    eventually("the command is completed", || queue_is_empty(&f.providers)).await;

    let i = info(&f.providers, id).await;
    assert_eq!(
        i.metadata.get(CANCEL_REQUESTED).map(|v| &v.value),
        Some(&Value::Bool(true))
    );
    assert_eq!(i.suspension, None, "cancel clears suspension");
    assert_eq!(i.execution_status, ExecutionStatus::Executing);
    assert_eq!(
        i.state,
        InstanceState::Initialized,
        "not completed: the host cancels it"
    );
    assert_eq!(i.timer, Some(later), "timer kept");
    assert_eq!(i.bookmarks, vec!["approve".to_owned()], "bookmarks kept");
    assert_eq!(i.owner, None);
    assert!(
        runnable_now(&f, "orders").await,
        "a host of its type will run it"
    );

    // The host that picks it up sees the request and the data it had.
    let h = f.store.create_handle_for(Some(owner), None);
    let view = f
        .store
        .execute(&h, instore::Command::TryLoadRunnable, T)
        .await
        .unwrap();
    assert_eq!(view.instance, Some(id));
    assert_eq!(view.data, data());
    assert!(view.metadata.contains_key(CANCEL_REQUESTED));
    running.stop().await;
}

async fn a_failing_command_is_retried_and_lands_in_the_error_log_after_five_attempts(f: Fixture) {
    // A live host holds the instance and registered no endpoint: every store-level attempt
    // answers InstanceLocked.
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let (id, _held) = instance(&f.store, owner, Save::data(data())).await;

    let service = service(&f);
    let stats = service.stats();
    let running = start(service);
    f.providers
        .control
        .enqueue(
            id,
            ControlCommand::Suspend {
                reason: "audit".into(),
            },
        )
        .await
        .unwrap();
    eventually("the command is given up", || async {
        !f.providers.control.error_log(10).await.unwrap().is_empty()
    })
    .await;

    let log = f.providers.control.error_log(10).await.unwrap();
    assert_eq!(log.len(), 1);
    let entry = &log[0];
    assert_eq!(entry.instance, id);
    assert_eq!(
        entry.command,
        ControlCommand::Suspend {
            reason: "audit".into()
        }
    );
    assert_eq!(entry.code, "instance_locked");
    assert!(entry.message.contains("locked"), "{}", entry.message);
    assert_eq!(entry.machine, "mgmt-test");
    assert_eq!(entry.attempts, 5);
    assert!(
        queue_is_empty(&f.providers).await,
        "given up: removed from the queue"
    );
    let s = stats.snapshot();
    assert_eq!((s.read, s.failed, s.given_up, s.completed), (5, 5, 1, 0));

    let i = info(&f.providers, id).await;
    assert_eq!(i.suspension, None, "nothing changed");
    assert_eq!(i.owner, Some(owner), "the host still holds it");
    assert!(matches!(
        i.blocked_on,
        Some(instore::BlockedOn::CommandFailing { attempts: 5, .. })
    ));
    running.stop().await;
}

async fn a_live_holders_in_process_endpoint_receives_the_command(f: Fixture) {
    let endpoints = EndpointRegistry::new();
    let recorder = Recorder::new(0, Arc::new(Mutex::new(Vec::new())));
    let name = endpoints.register_unique(Arc::new(recorder.clone()));
    let owner = host(&f.store, "orders", owner_metadata(&name)).await;
    let (id, _held) = instance(&f.store, owner, Save::data(data())).await;

    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(quick())
        .endpoints(Arc::new(endpoints))
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);
    let command = ControlCommand::Suspend {
        reason: "audit".into(),
    };
    f.providers
        .control
        .enqueue(id, command.clone())
        .await
        .unwrap();
    eventually("the endpoint receives the command", || async {
        !recorder.received().is_empty()
    })
    .await;
    eventually("the command is completed", || queue_is_empty(&f.providers)).await;

    let received = recorder.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].instance, id);
    assert_eq!(received[0].command, command);
    let md = &received[0].metadata;
    assert_eq!(md[handover::OWNER].value, Value::Uuid(owner.as_uuid()));
    assert_eq!(md[handover::CONTROL_ENDPOINT].value, Value::String(name));
    assert_eq!(
        md[handover::HOST_TYPE].value,
        Value::String("orders".into())
    );
    let s = stats.snapshot();
    assert_eq!((s.completed, s.via_endpoint, s.failed), (1, 1, 0));

    // The host applies it; the service did not touch the instance.
    let i = info(&f.providers, id).await;
    assert_eq!(i.suspension, None);
    assert_eq!(i.owner, Some(owner));
    assert!(f.providers.control.error_log(10).await.unwrap().is_empty());
    running.stop().await;
}

async fn a_holder_whose_endpoint_is_not_registered_gets_nothing_and_the_command_fails(f: Fixture) {
    let recorder = Recorder::new(0, Arc::new(Mutex::new(Vec::new())));
    let endpoints = EndpointRegistry::new();
    endpoints.register("inproc:someone-else", Arc::new(recorder.clone()));
    let owner = host(&f.store, "orders", owner_metadata("inproc:elsewhere")).await;
    let (id, _held) = instance(&f.store, owner, Save::data(data())).await;

    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(quick())
        .endpoints(Arc::new(endpoints))
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);
    f.providers
        .control
        .enqueue(id, ControlCommand::Resume)
        .await
        .unwrap();
    eventually("the first attempt fails", || async {
        stats.snapshot().failed >= 1
    })
    .await;
    assert!(recorder.received().is_empty());
    running.stop().await;
    let queued = f.providers.control.queued(None, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert!(queued[0].attempts >= 1);
    assert!(
        queued[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("locked")),
        "{queued:?}"
    );
}

async fn shutdown_stops_the_loop_promptly_and_hands_held_commands_back(f: Fixture) {
    let owner = host(&f.store, "orders", PropertyBag::new()).await;
    let (locked, _held) = instance(&f.store, owner, Save::data(data())).await;

    // Default pacing (1 s polls) and long retry delays: stopping must not wait for either.
    let settings = ManagementSettings {
        retry_delay: Duration::from_secs(20),
        retry_delay_max: Duration::from_secs(20),
        ..ManagementSettings::default()
    };
    let service = ManagementService::builder(f.store.clone(), f.providers.control.clone())
        .settings(settings)
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);
    f.providers
        .control
        .enqueue(locked, ControlCommand::Resume)
        .await
        .unwrap();
    eventually(
        "the command fails once and is held for its retry",
        || async { stats.snapshot().failed == 1 },
    )
    .await;
    // While held, it is locked: nobody else retries it early.
    let queued = f.providers.control.queued(None, 10).await.unwrap();
    assert_eq!(queued[0].attempts, 0);
    assert!(queued[0].locked_until.is_some());

    let took = running.stop().await;
    assert!(took < Duration::from_secs(2), "run took {took:?} to return");
    let queued = f.providers.control.queued(None, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].attempts, 1,
        "the failure was reported on the way out"
    );
    assert_eq!(
        queued[0].locked_until, None,
        "handed back, not left to expire"
    );

    // The service's owner is gone or its lease has ended.
    let now = f.store.clock().now();
    let owners = f.store.provider().owners().await.unwrap();
    assert!(owners
        .iter()
        .filter(|o| o.metadata.contains_key(ROLE))
        .all(|o| o.lease_expires_at <= now));

    // With nothing to do, stopping is immediate too.
    let running = start(service_for(&f));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let took = running.stop().await;
    assert!(
        took < Duration::from_secs(1),
        "idle run took {took:?} to return"
    );
}

fn service_for(f: &Fixture) -> ManagementService {
    ManagementService::new(
        f.store.clone(),
        f.providers.control.clone(),
        instore::QueueSettings::default(),
    )
    .unwrap()
}
