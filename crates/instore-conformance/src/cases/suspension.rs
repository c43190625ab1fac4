//! SPEC §9: suspension and the suspension extension.
//!
//! | rule (SPEC §9, §6.4 `suspend`) | cases |
//! |---|---|
//! | suspension (reason, exception name and message) is stored with the instance; `Unsuspend` clears it | `suspension_is_stored_with_the_instance` |
//! | `suspend` applies with or without data (a metadata-only save) | `a_metadata_only_save_suspends_and_leaves_the_data` |
//! | a suspended instance is never runnable (nor counted by QueryActivatable) | `a_suspended_instance_is_never_runnable` |
//! | a suspended instance is never recovered automatically | `a_suspended_instance_is_not_recovered_when_its_holder_dies` |
//! | with the suspension extension, Load/LoadByKey of a suspended instance → `InstanceSuspended { reason }` unless `allow_suspended` | `the_suspension_extension_rejects_loads_of_suspended_instances` |
//! | without the extension, suspended instances load as before | `without_the_suspension_extension_suspended_instances_load_as_before` |
//! | unsuspending an unlocked `Executing`/timed instance makes it runnable again | `unsuspending_makes_an_instance_runnable_again` |
//! | terminate and cancel clear suspension: the store-level save the control path makes (§10's control commands come with the control provider) | `a_terminating_save_clears_suspension_and_completes` |

use std::time::Duration;

use instore::{
    bag, Command, ExceptionInfo, ExecutionStatus, InstanceId, InstanceState, InstanceStore,
    InstanceView, KeyId, Load, LoadByKey, OwnerId, Save, StoreError, StoreSettings, SuspendChange,
    Suspension,
};

use crate::harness::{activatable, assert_err, ok, run, try_load_runnable, Env, T};

fn suspend(reason: &str) -> SuspendChange {
    let exception = ExceptionInfo {
        name: "PaymentDeclined".into(),
        message: "card declined".into(),
    };
    SuspendChange::Suspend {
        reason: reason.into(),
        exception: Some(exception),
    }
}

fn suspension(reason: &str) -> Suspension {
    let exception = ExceptionInfo {
        name: "PaymentDeclined".into(),
        message: "card declined".into(),
    };
    Suspension {
        reason: reason.into(),
        exception: Some(exception),
    }
}

/// A save (with data) that suspends and unlocks.
fn suspended(save: Save) -> Save {
    Save {
        suspend: suspend("payment declined"),
        ..save.and_unlock()
    }
}

fn unsuspend() -> Save {
    Save {
        suspend: SuspendChange::Unsuspend,
        ..Save::default()
    }
    .and_unlock()
}

fn executing() -> Save {
    Save::data(bag([("a", 1i64)])).with_status(ExecutionStatus::Executing)
}

/// A new instance, `Executing` (runnable once unlocked), suspended, unlocked, holding `keys`.
async fn suspended_executing(store: &InstanceStore, owner: OwnerId, keys: &[KeyId]) -> InstanceId {
    let id = InstanceId::new();
    let mut save = suspended(executing());
    save.keys_to_associate = keys.iter().map(|k| (*k).into()).collect();
    run(store, owner, Some(id), save)
        .await
        .expect("save suspended");
    id
}

fn with_extension(env: &Env) -> InstanceStore {
    let settings = StoreSettings {
        suspension_extension: true,
        ..env.settings()
    };
    env.store_with(settings, Vec::new()).0
}

/// SPEC §9: suspension is stored with the instance (reason, exception name and message), shown
/// by later loads, and cleared by `Unsuspend`.
pub async fn suspension_is_stored_with_the_instance(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = suspended_executing(&store, owner, &[]).await;
    let other = env.store();
    let reader = env.owner(&other, None).await;
    let h = env.handle(&other, reader, Some(id));
    let view = other.execute(&h, Load::default(), T).await.expect("load");
    assert_eq!(view.suspension, Some(suspension("payment declined")));

    let operator = SuspendChange::Suspend {
        reason: "operator".into(),
        exception: None,
    };
    let save = Save {
        suspend: operator,
        ..Save::default()
    };
    let view = other
        .execute(&h, save, T)
        .await
        .expect("suspend again, without an exception");
    assert_eq!(
        view.suspension,
        Some(Suspension {
            reason: "operator".into(),
            exception: None
        })
    );
    let view = other.execute(&h, unsuspend(), T).await.expect("unsuspend");
    assert_eq!(view.suspension, None);
    let view = ok(&store, owner, Some(id), Load::default()).await;
    assert_eq!(view.suspension, None, "cleared in storage");
}

/// SPEC §6.4: `suspend` applies in a metadata-only save, leaving data and projected fields; later
/// saves that say nothing about suspension keep it.
pub async fn a_metadata_only_save_suspends_and_leaves_the_data(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let h = env.handle(&store, owner, Some(InstanceId::new()));
    store.execute(&h, executing(), T).await.expect("save");
    let save = Save {
        suspend: suspend("hold"),
        ..Save::default()
    };
    let view = store.execute(&h, save, T).await.expect("suspend");
    assert_eq!(view.suspension, Some(suspension("hold")));
    assert_eq!(
        (view.data, view.status),
        (bag([("a", 1i64)]), Some(ExecutionStatus::Executing))
    );
    let view = store
        .execute(&h, Save::data(bag([("a", 2i64)])), T)
        .await
        .expect("save data");
    assert_eq!(view.suspension, Some(suspension("hold")), "kept");
}

/// SPEC §9: a suspended instance is never runnable — not `Executing`, not with a due timer — and
/// QueryActivatable does not count it.
pub async fn a_suspended_instance_is_never_runnable(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    suspended_executing(&store, owner, &[]).await;
    let timed = suspended(Save::data(bag([("t", 1i64)])).with_timer(env.now()));
    ok(&store, owner, Some(InstanceId::new()), timed).await;
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(try_load_runnable(&store, owner).await.1, None);

    // A runnable control instance shows QueryActivatable counts runnable ones, not these.
    let control = executing().and_unlock();
    ok(&store, owner, Some(InstanceId::new()), control).await;
    ok(&store, owner, None, Command::DeleteOwner).await;
    let watcher = env.owner(&store, None).await;
    let view = ok(&store, watcher, None, Command::QueryActivatable).await;
    let want = activatable("orders", 1);
    assert_eq!(
        view.activatable, want,
        "only the control instance needs a host"
    );
}

/// SPEC §9, §8: when the host holding a suspended instance dies, the instance is not recovered
/// (an unsuspended one held by the same host is).
pub async fn a_suspended_instance_is_not_recovered_when_its_holder_dies(env: &Env) {
    let crashed = env.store();
    let dead = env.owner(&crashed, Some("orders")).await;
    let hs = crashed.create_handle_for(Some(dead), Some(InstanceId::new()));
    let save = Save {
        suspend: suspend("hold"),
        ..executing()
    };
    crashed
        .execute(&hs, save, T)
        .await
        .expect("suspended, held");
    let hr = crashed.create_handle_for(Some(dead), Some(InstanceId::new()));
    let recoverable = crashed
        .execute(&hr, executing(), T)
        .await
        .expect("held")
        .instance;
    crashed.shutdown().await;
    env.clock.advance(Duration::from_secs(61));

    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let (_h1, first) = try_load_runnable(&store, owner).await;
    assert_eq!(first, recoverable);
    let (_h2, second) = try_load_runnable(&store, owner).await;
    assert_eq!(second, None, "the suspended instance stays where it is");
    drop((hs, hr));
}

/// SPEC §9: with the suspension extension, Load and LoadByKey (creating or not) of a suspended
/// instance fail with `InstanceSuspended { reason }` and lock nothing, unless `allow_suspended`.
pub async fn the_suspension_extension_rejects_loads_of_suspended_instances(env: &Env) {
    let store = with_extension(env);
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let id = suspended_executing(&store, owner, &[key]).await;
    let is_suspended = |r: Result<InstanceView, StoreError>| match r {
        Err(StoreError::InstanceSuspended { instance, reason }) => {
            instance == id && reason == "payment declined"
        }
        other => panic!("expected InstanceSuspended, got {other:?}"),
    };
    assert!(is_suspended(
        run(&store, owner, Some(id), Load::default()).await
    ));
    for command in [LoadByKey::new(key), LoadByKey::or_create(key)] {
        assert!(is_suspended(run(&store, owner, None, command).await));
    }

    // Nothing was locked: another host loads it with allow_suspended (the control path).
    let other = with_extension(env);
    let operator = env.owner(&other, None).await;
    let h = env.handle(&other, operator, Some(id));
    let allowed = Load {
        allow_suspended: true,
        ..Load::default()
    };
    let view = other.execute(&h, allowed, T).await.expect("allowed");
    assert_eq!(view.suspension, Some(suspension("payment declined")));
    other.execute(&h, unsuspend(), T).await.expect("resume");
    // Resumed, it loads without allow_suspended again.
    let view = run(&store, owner, None, LoadByKey::new(key))
        .await
        .expect("resumed");
    assert_eq!((view.instance, view.suspension), (Some(id), None));
}

/// SPEC §9: without the extension (the bare store's default), suspended instances load by id and
/// by key as before, showing their suspension.
pub async fn without_the_suspension_extension_suspended_instances_load_as_before(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let id = suspended_executing(&store, owner, &[key]).await;
    let h = env.handle(&store, owner, Some(id));
    let view = store.execute(&h, Load::default(), T).await.expect("loads");
    assert_eq!(view.suspension, Some(suspension("payment declined")));
    store
        .execute(&h, Save::default().and_unlock(), T)
        .await
        .expect("unlock");
    let view = run(&store, owner, None, LoadByKey::new(key))
        .await
        .expect("loads by key");
    let loaded = (view.instance, view.suspension);
    assert_eq!(loaded, (Some(id), Some(suspension("payment declined"))));
}

/// SPEC §9, §8: `Unsuspend` on an unlocked `Executing` or timed instance makes it runnable again.
pub async fn unsuspending_makes_an_instance_runnable_again(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let executing = suspended_executing(&store, owner, &[]).await;
    let timed_id = InstanceId::new();
    let timed = suspended(Save::data(bag([("t", 1i64)])).with_timer(env.now()));
    ok(&store, owner, Some(timed_id), timed).await;
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(try_load_runnable(&store, owner).await.1, None);

    // An owner of the same host type resumes them (a host-typeless one could change their type).
    let operator = env.owner(&store, Some("orders")).await;
    for id in [timed_id, executing] {
        let h = env.handle(&store, operator, Some(id));
        store.execute(&h, Load::default(), T).await.expect("load");
        // A metadata-only save: status and timer stay as they were.
        store.execute(&h, unsuspend(), T).await.expect("resume");
    }
    let (_h1, first) = try_load_runnable(&store, owner).await;
    assert_eq!(first, Some(timed_id), "due before the other was unlocked");
    let (_h2, second) = try_load_runnable(&store, owner).await;
    assert_eq!(second, Some(executing));
}

/// SPEC §9 "terminate and cancel clear suspension", §10: at the store level a terminate is a
/// save, by a load that allows suspended instances, that records the status, clears suspension
/// and completes the instance in one transaction. (The control command itself is §10's.)
pub async fn a_terminating_save_clears_suspension_and_completes(env: &Env) {
    let store = with_extension(env);
    let owner = env.owner(&store, Some("orders")).await;
    let id = suspended_executing(&store, owner, &[]).await;
    let operator = env.owner(&store, None).await;
    let h = env.handle(&store, operator, Some(id));
    let load = Load {
        allow_suspended: true,
        ..Load::default()
    };
    store
        .execute(&h, load, T)
        .await
        .expect("the control path loads suspended instances");
    let terminate = Save {
        suspend: SuspendChange::Unsuspend,
        ..Save::data(bag([("a", 1i64)]))
            .with_status(ExecutionStatus::Terminated)
            .and_complete()
    };
    let view = store.execute(&h, terminate, T).await.expect("terminate");
    let after = (view.suspension, view.state, view.status);
    assert_eq!(
        after,
        (
            None,
            InstanceState::Completed,
            Some(ExecutionStatus::Terminated)
        )
    );
    let reload = run(
        &store,
        operator,
        Some(id),
        Load {
            allow_suspended: true,
            ..Load::default()
        },
    )
    .await;
    assert_err!(reload, StoreError::InstanceComplete { instance } if instance == id);
    assert_eq!(
        try_load_runnable(&store, owner).await.1,
        None,
        "never runnable again"
    );
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! suspension_cases {
    ($make:path) => {
        $crate::__case!($make, suspension::suspension_is_stored_with_the_instance);
        $crate::__case!(
            $make,
            suspension::a_terminating_save_clears_suspension_and_completes
        );
        $crate::__case!(
            $make,
            suspension::a_metadata_only_save_suspends_and_leaves_the_data
        );
        $crate::__case!($make, suspension::a_suspended_instance_is_never_runnable);
        $crate::__case!(
            $make,
            suspension::a_suspended_instance_is_not_recovered_when_its_holder_dies
        );
        $crate::__case!(
            $make,
            suspension::the_suspension_extension_rejects_loads_of_suspended_instances
        );
        $crate::__case!(
            $make,
            suspension::without_the_suspension_extension_suspended_instances_load_as_before
        );
        $crate::__case!(
            $make,
            suspension::unsuspending_makes_an_instance_runnable_again
        );
    };
}
