//! SPEC §6.5, §6.6, §8: the runnable set, TryLoadRunnable, QueryActivatable, recovery.
//!
//! | rule | cases |
//! |---|---|
//! | §6.5 TryLoadRunnable needs an owner with a host type (`HostTypeRequired`) and no instance on the handle (`AlreadyBoundToInstance`) | `try_load_runnable_needs_a_host_type_and_an_unbound_handle` |
//! | §6.5 none runnable → the view stays unbound, no error | `try_load_runnable_without_runnable_instances_leaves_the_handle_unbound` |
//! | §8 (b) unlocked and `Executing` → runnable; §6.5 loaded as Load does, and taken out of the set | `an_unlocked_executing_instance_is_runnable`, `freeing_a_handle_without_saving_makes_an_executing_instance_runnable` |
//! | §8 (a) unlocked and timer due → runnable (idle without a due timer is not) | `a_due_timer_makes_an_unlocked_instance_runnable` |
//! | §8 locked by a live owner → not runnable | `a_locked_instance_is_not_runnable_while_its_owner_lives` |
//! | §8 completed (or uninitialized) → never runnable | `a_completed_instance_is_never_runnable`, `a_crashed_hosts_instances_go_to_another_host_of_its_type` |
//! | §6.5 the instance runnable longest goes first (earliest due timer; `Executing`: time of unlock; dead holder: end of its lease) | `try_load_runnable_takes_the_instance_runnable_longest_first`, `a_dead_owners_instances_are_runnable_from_the_end_of_its_lease` |
//! | §6.5 an instance that cannot be loaded is skipped and removed from the runnable set | `try_load_runnable_skips_and_removes_an_instance_it_cannot_load` |
//! | §8 instances run on the host type of the owner that locks them | `instances_take_the_host_type_of_the_owner_that_locks_them` |
//! | §8 (c) / recovery: an expired owner's initialized instances become runnable for another host of the type | `a_crashed_hosts_instances_go_to_another_host_of_its_type`, `a_dead_owners_instances_are_runnable_from_the_end_of_its_lease` |
//! | §6.6 QueryActivatable: host types with runnable instances and no live owner, with counts; needs an owner | `query_activatable_lists_host_types_with_runnable_instances_and_no_live_owner`, `a_crashed_hosts_instances_go_to_another_host_of_its_type` |
//!
//! Suspended instances: see `suspension`. Loading by id or key removes from the set: see `load`.

use std::time::Duration;

use instore::{
    bag, Command, ExecutionStatus, InstanceHandle, InstanceId, InstanceState, InstanceStore,
    InstanceView, Load, OwnerId, Save, StoreError, Timestamp,
};

use crate::harness::*;

/// Saves a new instance through a handle that keeps holding it unless `save` unlocks.
async fn held(store: &InstanceStore, owner: OwnerId, save: Save) -> (InstanceHandle, InstanceId) {
    let id = InstanceId::new();
    let h = store.create_handle_for(Some(owner), Some(id));
    store.execute(&h, save, T).await.expect("save");
    (h, id)
}

/// Saves a new instance with `save` (which unlocks it).
async fn instance(store: &InstanceStore, owner: OwnerId, save: Save) -> InstanceId {
    held(store, owner, save).await.1
}

/// [`executing`] without the unlock: the saving handle keeps holding the instance.
fn executing_locked() -> Save {
    Save {
        unlock: false,
        ..executing()
    }
}

fn timed(at: Timestamp) -> Save {
    Save::data(bag([("step", 1i64)]))
        .with_timer(at)
        .and_unlock()
}

fn in_secs(env: &Env, secs: i64) -> Timestamp {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs < 0 {
        env.now().minus(d)
    } else {
        env.now().plus(d)
    }
}

/// What TryLoadRunnable finds, for checks that expect nothing (the handle is dropped, so
/// anything found is unlocked again).
async fn finds(store: &InstanceStore, owner: OwnerId) -> Option<InstanceId> {
    try_load(store, owner).await.1.instance
}

/// Loads runnable instances until none is left; returns them in order, keeping their handles.
async fn drain(store: &InstanceStore, owner: OwnerId) -> (Vec<InstanceHandle>, Vec<InstanceId>) {
    let (mut handles, mut ids) = (Vec::new(), Vec::new());
    while let (
        h,
        InstanceView {
            instance: Some(id), ..
        },
    ) = try_load(store, owner).await
    {
        assert!(
            ids.len() < 100,
            "TryLoadRunnable keeps finding instances: {ids:?}"
        );
        handles.push(h);
        ids.push(id);
    }
    (handles, ids)
}

/// SPEC §6.5: an owner without a host type gets `HostTypeRequired`; a handle bound to an
/// instance gets `AlreadyBoundToInstance`.
pub async fn try_load_runnable_needs_a_host_type_and_an_unbound_handle(env: &Env) {
    let store = env.store();
    let untyped = env.owner(&store, None).await;
    let typed = env.owner(&store, Some("orders")).await;
    instance(&store, typed, executing()).await;
    let result = run(&store, untyped, None, Command::TryLoadRunnable).await;
    assert_err!(result, StoreError::HostTypeRequired);
    let bound = InstanceId::new();
    let result = run(&store, typed, Some(bound), Command::TryLoadRunnable).await;
    assert_err!(result, StoreError::AlreadyBoundToInstance { instance } if instance == bound);
    let unowned = store.create_handle_for(None, None);
    let result = store.execute(&unowned, Command::TryLoadRunnable, T).await;
    assert_err!(result, StoreError::Invalid { .. });
}

/// SPEC §6.5: with nothing runnable the view is unbound and the handle stays usable.
pub async fn try_load_runnable_without_runnable_instances_leaves_the_handle_unbound(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let h = env.handle(&store, owner, None);
    let view = store
        .execute(&h, Command::TryLoadRunnable, T)
        .await
        .expect("nothing is fine");
    assert_eq!(
        (view.instance, view.lock_version, h.instance()),
        (None, None, None)
    );
    let id = instance(&store, owner, executing()).await;
    let view = store
        .execute(&h, Command::TryLoadRunnable, T)
        .await
        .expect("try again");
    assert_eq!(view.instance, Some(id));
}

/// SPEC §8 (b), §6.5: an unlocked `Executing` instance is runnable; TryLoadRunnable loads it as
/// Load does (locked, bound, with its data and host type) and it leaves the runnable set.
pub async fn an_unlocked_executing_instance_is_runnable(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let id = instance(&store, owner, executing()).await;
    let other = env.store();
    let runner = env.owner(&other, Some("orders")).await;
    let (h, view) = try_load(&other, runner).await;
    let loaded = (view.instance, view.state, view.lock_version);
    assert_eq!(loaded, (Some(id), InstanceState::Initialized, Some(2)));
    assert_eq!(
        (view.data, view.status),
        (bag([("step", 1i64)]), Some(ExecutionStatus::Executing))
    );
    assert_eq!(view.host_type.as_deref(), Some("orders"));
    assert_eq!((h.instance(), h.lock_version()), (Some(id), Some(2)));
    assert_eq!(
        finds(&other, runner).await,
        None,
        "loaded instances leave the runnable set"
    );
    let save = Save::data(bag([("step", 2i64)]));
    other
        .execute(&h, save, T)
        .await
        .expect("the loaded handle saves");
}

/// SPEC §8 (b) with §5: a handle freed without saving is unlocked in the background, which makes
/// an `Executing` instance runnable.
pub async fn freeing_a_handle_without_saving_makes_an_executing_instance_runnable(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let runner = env.owner(&store, Some("orders")).await;
    let (h, id) = held(&store, owner, executing_locked()).await;
    assert_eq!(finds(&store, runner).await, None, "held by a live owner");
    h.free();
    // The unlock runs in the background: retry (in real time, bounded) until it has happened.
    let mut found = None;
    for _ in 0..2000 {
        let (h, view) = try_load(&store, runner).await;
        if view.instance.is_some() {
            found = Some((h, view.instance));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let found = found.expect("the freed handle's lock is released in the background");
    assert_eq!(found.1, Some(id));
}

/// SPEC §8 (a): an unlocked instance is runnable once its timer is due, not before; an idle one
/// without a timer, or with a status other than `Executing`, never is.
pub async fn a_due_timer_makes_an_unlocked_instance_runnable(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    instance(
        &store,
        owner,
        Save::data(bag([("idle", true)])).and_unlock(),
    )
    .await;
    let closed = Save::data(bag([("closed", true)])).with_status(ExecutionStatus::Closed);
    instance(&store, owner, closed.and_unlock()).await;
    let id = instance(&store, owner, timed(in_secs(env, 10))).await;
    assert_eq!(finds(&store, owner).await, None, "not due yet");
    env.clock.advance(Duration::from_secs(9));
    assert_eq!(finds(&store, owner).await, None, "still not due");
    env.clock.advance(Duration::from_secs(1));
    let (_h, view) = try_load(&store, owner).await;
    assert_eq!(view.instance, Some(id), "due now");
    env.clock.advance(Duration::from_secs(20));
    assert_eq!(
        finds(&store, owner).await,
        None,
        "idle and closed instances never run"
    );
}

/// SPEC §8: an instance locked by a live owner is not runnable, whatever its status and timer.
pub async fn a_locked_instance_is_not_runnable_while_its_owner_lives(env: &Env) {
    let store = env.store();
    let holder = env.owner(&store, Some("orders")).await;
    let runner = env.owner(&store, Some("orders")).await;
    let save = executing_locked().with_timer(env.now());
    let (_h, _) = held(&store, holder, save).await;
    env.clock.advance(Duration::from_secs(5));
    assert_eq!(finds(&store, runner).await, None);
}

/// SPEC §8: completed instances are never runnable, even `Executing` or with a due timer.
pub async fn a_completed_instance_is_never_runnable(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let save = Save::data(bag([("a", 1i64)])).with_status(ExecutionStatus::Executing);
    instance(&store, owner, save.with_timer(env.now()).and_complete()).await;
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(finds(&store, owner).await, None);
}

/// SPEC §6.5 ▲: the instance runnable longest goes first: timers by due time (a timer saved
/// later but due earlier goes first), `Executing` instances from the time they were unlocked.
pub async fn try_load_runnable_takes_the_instance_runnable_longest_first(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let due_3 = instance(&store, owner, timed(in_secs(env, 3))).await;
    let due_1 = instance(&store, owner, timed(in_secs(env, 1))).await;
    let (h, unlocked_at_2) = held(&store, owner, executing_locked()).await;
    env.clock.advance(Duration::from_secs(2));
    store
        .execute(&h, Save::default().and_unlock(), T)
        .await
        .expect("unlock at t0+2s");
    let overdue = instance(&store, owner, timed(in_secs(env, -12))).await;
    env.clock.advance(Duration::from_secs(2));

    let runner = env.owner(&store, Some("orders")).await;
    let (_handles, order) = drain(&store, runner).await;
    assert_eq!(order, vec![overdue, due_1, unlocked_at_2, due_3]);
}

/// SPEC §6.5 ▲: an instance whose row cannot be loaded is skipped — the next one is loaded — and
/// taken out of the runnable set, so it never blocks or comes back.
pub async fn try_load_runnable_skips_and_removes_an_instance_it_cannot_load(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let bad = instance(&store, owner, timed(in_secs(env, 1))).await;
    let next = instance(&store, owner, timed(in_secs(env, 2))).await;
    let last = instance(&store, owner, timed(in_secs(env, 3))).await;
    env.provider.corrupt_instance_data(bad).await;
    env.clock.advance(Duration::from_secs(5));

    let (h1, first) = try_load(&store, owner).await;
    assert_eq!(
        first.instance,
        Some(next),
        "the damaged instance, due first, is skipped"
    );
    let (h2, second) = try_load(&store, owner).await;
    assert_eq!(second.instance, Some(last));
    assert_eq!(
        finds(&store, owner).await,
        None,
        "the damaged instance is not loaded"
    );

    // Out of the set, not merely skipped: with no orders host alive, QueryActivatable counts only
    // a new runnable instance (the loaded ones are completed so their locks do not count).
    for h in [h1, h2] {
        let done = Save::data(bag([("done", true)])).and_complete();
        store.execute(&h, done, T).await.expect("complete");
    }
    let later = instance(&store, owner, executing()).await;
    let watcher = env.owner(&store, None).await;
    ok(&store, owner, None, Command::DeleteOwner).await;
    let view = ok(&store, watcher, None, Command::QueryActivatable).await;
    let want = activatable("orders", 1);
    assert_eq!(view.activatable, want);

    env.clock.advance(Duration::from_secs(5));
    let runner = env.owner(&store, Some("orders")).await;
    let (_handles, rest) = drain(&store, runner).await;
    assert_eq!(
        rest,
        vec![later],
        "later tries never return the damaged instance"
    );
}

/// SPEC §8: an instance runs on the host type of the owner that last locked it.
pub async fn instances_take_the_host_type_of_the_owner_that_locks_them(env: &Env) {
    let store = env.store();
    let billing = env.owner(&store, Some("billing")).await;
    let orders = env.owner(&store, Some("orders")).await;
    let id = InstanceId::new();
    let view = ok(&store, billing, Some(id), executing()).await;
    assert_eq!(view.host_type.as_deref(), Some("billing"));
    assert_eq!(finds(&store, orders).await, None, "not an orders instance");

    // An orders owner takes it over by id: from now on it is an orders instance.
    let h = env.handle(&store, orders, Some(id));
    let view = store.execute(&h, Load::default(), T).await.expect("load");
    assert_eq!(view.host_type.as_deref(), Some("orders"));
    store.execute(&h, executing(), T).await.expect("unlock");
    assert_eq!(
        finds(&store, billing).await,
        None,
        "no longer a billing instance"
    );
    let (_h, view) = try_load(&store, orders).await;
    assert_eq!(view.instance, Some(id));
}

/// SPEC §8 (c), recovery: once a crashed host's lease has passed, its initialized instances are
/// runnable — for hosts of its type only — whatever their status; uninitialized ones are not.
pub async fn a_crashed_hosts_instances_go_to_another_host_of_its_type(env: &Env) {
    let crashed = env.store();
    let dead = env.owner(&crashed, Some("orders")).await;
    let (_hx, x) = held(&crashed, dead, executing_locked()).await;
    let (_hy, y) = held(&crashed, dead, Save::data(bag([("idle", true)]))).await;
    let accept = Load {
        accept_uninitialized: true,
        ..Load::default()
    };
    let hu = crashed.create_handle_for(Some(dead), Some(InstanceId::new()));
    crashed
        .execute(&hu, accept, T)
        .await
        .expect("uninitialized, held");
    crashed.shutdown().await;
    env.clock.advance(Duration::from_secs(61));

    let store = env.store();
    let billing = env.owner(&store, Some("billing")).await;
    let view = ok(&store, billing, None, Command::QueryActivatable).await;
    let want = activatable("orders", 2);
    assert_eq!(view.activatable, want);
    assert_eq!(
        finds(&store, billing).await,
        None,
        "another host type gets nothing"
    );

    let orders = env.owner(&store, Some("orders")).await;
    let (handles, mut got) = drain(&store, orders).await;
    got.sort();
    let mut want = vec![x, y];
    want.sort();
    assert_eq!(got, want, "x and y, not the uninitialized one");
    let epochs: Vec<_> = handles.iter().map(InstanceHandle::lock_version).collect();
    assert_eq!(epochs, vec![Some(2), Some(2)], "taken over by a new owner");
}

/// SPEC §6.5, §8 (c): an instance held by a dead owner has been runnable since that owner's
/// lease ended, and takes its turn among timers accordingly.
pub async fn a_dead_owners_instances_are_runnable_from_the_end_of_its_lease(env: &Env) {
    let first_host = env.store();
    let a = env.owner(&first_host, Some("orders")).await; // lease ends t0+60s
    let (_hx, x) = held(&first_host, a, Save::data(bag([("x", 1i64)]))).await;
    let z = instance(&first_host, a, timed(in_secs(env, 65))).await;
    first_host.shutdown().await;
    env.clock.advance(Duration::from_secs(10));
    let second_host = env.store();
    let b = env.owner(&second_host, Some("orders")).await; // lease ends t0+70s
    let (_hy, y) = held(&second_host, b, Save::data(bag([("y", 1i64)]))).await;
    second_host.shutdown().await;
    env.clock.advance(Duration::from_secs(61));

    let store = env.store();
    let runner = env.owner(&store, Some("orders")).await;
    let (_handles, order) = drain(&store, runner).await;
    assert_eq!(
        order,
        vec![x, z, y],
        "t0+60s (lease), t0+65s (timer), t0+70s (lease)"
    );
}

/// SPEC §6.6: QueryActivatable lists host types that have runnable instances but no live owner,
/// counting only runnable instances; it needs an owner.
pub async fn query_activatable_lists_host_types_with_runnable_instances_and_no_live_owner(
    env: &Env,
) {
    let store = env.store();
    let orders = env.owner(&store, Some("orders")).await;
    let billing = env.owner(&store, Some("billing")).await;
    instance(&store, orders, executing()).await;
    for _ in 0..2 {
        instance(&store, billing, executing()).await;
    }
    instance(
        &store,
        billing,
        Save::data(bag([("idle", true)])).and_unlock(),
    )
    .await;
    instance(&store, billing, timed(in_secs(env, 3600))).await;
    let view = ok(&store, orders, None, Command::QueryActivatable).await;
    assert_eq!(view.activatable, vec![], "every host type has a live owner");

    ok(&store, billing, None, Command::DeleteOwner).await;
    let view = ok(&store, orders, None, Command::QueryActivatable).await;
    let want = activatable("billing", 2);
    assert_eq!(view.activatable, want);

    let unowned = store.create_handle_for(None, None);
    let result = store.execute(&unowned, Command::QueryActivatable, T).await;
    assert_err!(result, StoreError::Invalid { .. });
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! runnable_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            runnable::try_load_runnable_needs_a_host_type_and_an_unbound_handle
        );
        $crate::__case!(
            $make,
            runnable::try_load_runnable_without_runnable_instances_leaves_the_handle_unbound
        );
        $crate::__case!($make, runnable::an_unlocked_executing_instance_is_runnable);
        $crate::__case!(
            $make,
            runnable::freeing_a_handle_without_saving_makes_an_executing_instance_runnable
        );
        $crate::__case!(
            $make,
            runnable::a_due_timer_makes_an_unlocked_instance_runnable
        );
        $crate::__case!(
            $make,
            runnable::a_locked_instance_is_not_runnable_while_its_owner_lives
        );
        $crate::__case!($make, runnable::a_completed_instance_is_never_runnable);
        $crate::__case!(
            $make,
            runnable::try_load_runnable_takes_the_instance_runnable_longest_first
        );
        $crate::__case!(
            $make,
            runnable::try_load_runnable_skips_and_removes_an_instance_it_cannot_load
        );
        $crate::__case!(
            $make,
            runnable::instances_take_the_host_type_of_the_owner_that_locks_them
        );
        $crate::__case!(
            $make,
            runnable::a_crashed_hosts_instances_go_to_another_host_of_its_type
        );
        $crate::__case!(
            $make,
            runnable::a_dead_owners_instances_are_runnable_from_the_end_of_its_lease
        );
        $crate::__case!(
            $make,
            runnable::query_activatable_lists_host_types_with_runnable_instances_and_no_live_owner
        );
    };
}
