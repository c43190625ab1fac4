//! Races between handles of one owner, background work and storage (SPEC §4, §5): the runtime's
//! bookkeeping of which handle holds which lock must never let two live handles hold one lock,
//! nor leave a lock that no handle will ever release. Each case is a regression test for a race
//! found in review.
//!
//! | rule | cases |
//! |---|---|
//! | §5 one holder: a lock taken while a background unlock's answer is on its way stays with its new handle | `a_claim_taken_while_the_background_unlock_returns_survives` |
//! | §5 a freed handle's lock is released: also when freed while its acquiring command runs | `freeing_a_handle_while_its_load_runs_does_not_strand_the_lock` |
//! | §5 background unlock retries until it succeeds: also after a failed takeover by a new handle | `a_failed_takeover_of_a_pending_unlock_still_releases_the_lock` |
//! | §5, §6.5 `TryLoadRunnable` never takes an instance another handle of its owner is acquiring | `try_load_runnable_skips_instances_other_handles_are_acquiring` |
//! | §4 `DeleteOwner` is not a loss: no event, no replacement, even racing a renewal | `delete_owner_racing_a_renewal_registers_no_replacement` |
//! | §6 a command waiting for an in-flight unlock ends when the store shuts down | `shutdown_during_a_reclaim_wait_ends_the_command` |
//! | §5 a lock `LoadByKey` took behind the same owner's unlocking save is held or released, never stranded | `a_load_by_key_behind_the_same_owners_unlocking_save_strands_no_lock` |
//! | §5 `HandleConflict` after the provider granted the lock leaves the holder's lock alone | `a_load_by_key_losing_to_another_handle_leaves_that_handles_lock_alone` |
//! | §5 `HandleConflict` after the provider granted the lock strands no lock when the other handle's acquiring command fails | `a_lock_refused_to_a_load_by_key_is_released_when_the_acquiring_handle_fails`, `a_lock_refused_to_try_load_runnable_is_released_when_the_acquiring_handle_fails` |

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use instore::{
    Command, CreateOwner, InstanceHandle, InstanceId, InstanceStore, KeyId, Load, LoadByKey,
    OwnerId, Save, StoreError, StoreSettings,
};

use crate::harness::{
    assert_err, create, data, eventually, executing, finish, load_as, ok_on, other_host, settle,
    spawn, Env, T,
};

/// Leases long enough that no case here loses an owner by moving the clock.
fn long_lease(env: &Env) -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(3600),
        renew_every: Duration::from_secs(1800),
        ..env.settings()
    }
}

/// A key another instance of `owner` holds (so a save associating it fails).
async fn key_held_elsewhere(env: &Env, store: &InstanceStore, owner: OwnerId) -> KeyId {
    let key = KeyId::new();
    let holder = env.handle(store, owner, Some(InstanceId::new()));
    let save = Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(0))
    };
    ok_on(store, &holder, save.and_unlock()).await;
    key
}

/// A save that fails with `InstanceKeyCollision` on `key`, after every other check passed.
fn colliding(key: KeyId) -> Save {
    Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(2))
    }
}

/// A handle frees its lock; the background unlock commits but its answer is still on its way
/// when a `LoadByKey` of the same owner takes the instance. The late answer must not erase the
/// new claim, or a third handle could reclaim the same lock at the same version.
pub async fn a_claim_taken_while_the_background_unlock_returns_survives(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, Some("orders")).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    ok_on(
        &store,
        &first,
        Save {
            keys_to_associate: vec![key.into()],
            ..Save::data(data(1))
        },
    )
    .await;
    faults.hold_after("unlock");
    drop(first);
    eventually("the unlock committed", || faults.completed("unlock") == 1).await;
    let by_key = store.create_handle_for(Some(owner), None);
    let taken = ok_on(&store, &by_key, LoadByKey::new(key)).await;
    assert_eq!(taken.lock_version, Some(1));
    faults.release_after("unlock");
    settle().await;
    let by_id = env.handle(&store, owner, Some(id));
    assert_err!(
        store.execute(&by_id, Load::default(), T).await,
        StoreError::HandleConflict { .. }
    );
    ok_on(&store, &by_key, Save::data(data(2))).await;
}

/// Freeing a handle while its acquiring load runs must not leave the lock bound to the freed
/// handle: the owner can load the instance again once the load has returned.
pub async fn freeing_a_handle_while_its_load_runs_does_not_strand_the_lock(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    ok_on(&store, &first, Save::data(data(1)).and_unlock()).await;
    faults.hold();
    let handle = Arc::new(env.handle(&store, owner, Some(id)));
    let loading = spawn(&store, handle.clone(), create(), T);
    eventually("the load is in flight", || faults.calls("load") == 2).await;
    handle.free();
    faults.release();
    let answered = finish(loading).await;
    assert!(
        answered.as_ref().map_or(true, |v| v.lock_version.is_none()),
        "a freed handle holds no lock: {answered:?}"
    );
    settle().await;
    let again = load_as(&store, owner, id).await;
    assert!(again.is_ok(), "the owner can load it again: {again:?}");
}

/// A freed handle's unlock fails for a while; meanwhile a new handle of the owner takes the claim
/// over and its acquiring save fails. The lock must still be released once unlocks work again.
pub async fn a_failed_takeover_of_a_pending_unlock_still_releases_the_lock(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let (id, theirs) = (
        InstanceId::new(),
        key_held_elsewhere(env, &store, owner).await,
    );
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    ok_on(&store, &first, Save::data(data(1))).await;
    faults.fail_unlocks.store(true, SeqCst);
    drop(first);
    eventually("the unlock was tried", || faults.calls("unlock") == 1).await;
    settle().await;
    let second = env.handle(&store, owner, Some(id));
    let colliding = colliding(theirs);
    assert_err!(
        store.execute(&second, colliding, T).await,
        StoreError::InstanceKeyCollision { .. }
    );
    drop(second);
    faults.fail_unlocks.store(false, SeqCst);
    for _ in 0..20 {
        env.clock.advance(Duration::from_secs(1));
        settle().await;
    }
    let (other_store, b) = other_host(env, None).await;
    let taken = load_as(&other_store, b, id).await;
    assert!(
        taken.is_ok(),
        "the freed handle's lock is released in the end: {taken:?}"
    );
}

/// While a handle of the owner is acquiring an instance (its save in flight), `TryLoadRunnable`
/// of the same owner must not take it; and when that save then fails, nothing stays locked.
pub async fn try_load_runnable_skips_instances_other_handles_are_acquiring(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, Some("orders")).await;
    let (id, theirs) = (
        InstanceId::new(),
        key_held_elsewhere(env, &store, owner).await,
    );
    let h = env.handle(&store, owner, Some(id));
    ok_on(&store, &h, create()).await;
    ok_on(&store, &h, executing().and_unlock()).await;
    faults.hold();
    let saves = faults.calls("save");
    let colliding = colliding(theirs);
    let saving = spawn(&store, env.handle(&store, owner, Some(id)), colliding, T);
    eventually("the save is in flight", || {
        faults.calls("save") == saves + 1
    })
    .await;
    let tlr = store.create_handle_for(Some(owner), None);
    let found = store
        .execute(&tlr, Command::TryLoadRunnable, T)
        .await
        .expect("TryLoadRunnable");
    assert_eq!(
        found.instance, None,
        "the instance another handle is acquiring is not offered"
    );
    faults.release();
    assert_err!(
        finish(saving).await,
        StoreError::InstanceKeyCollision { .. }
    );
    settle().await;
    let (other_store, b) = other_host(env, Some("orders")).await;
    let taken = load_as(&other_store, b, id).await;
    assert!(taken.is_ok(), "nothing stays locked: {taken:?}");
}

/// `DeleteOwner` commits while a renewal finds the lease ended: still no `OwnerLost` event and no
/// replacement owner (decision 0004).
pub async fn delete_owner_racing_a_renewal_registers_no_replacement(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let mut events = store.subscribe();
    let handle = Arc::new(store.create_handle_for(None, None));
    let owner = ok_on(&store, &handle, CreateOwner::host_type("orders"))
        .await
        .owner
        .expect("owner");
    faults.hold_after("delete_owner");
    let deleting = spawn(&store, handle.clone(), Command::DeleteOwner, T);
    eventually("the delete committed", || {
        faults.completed("delete_owner") == 1
    })
    .await;
    store.renew_leases().await; // what the background renewal may do at this very moment
    faults.release_after("delete_owner");
    finish(deleting).await.expect("DeleteOwner succeeds");
    settle().await;
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let owners = store.provider().owners().await.expect("owners");
    let live: Vec<_> = owners
        .into_iter()
        .filter(|o| o.id != owner && o.lease_expires_at > env.now())
        .collect();
    assert!(
        seen.is_empty() && live.is_empty(),
        "events {seen:?}, replacement owners {live:?}"
    );
}

/// A command waiting for a background unlock already in flight must end (not spin) when the
/// store shuts down and that unlock is abandoned.
pub async fn shutdown_during_a_reclaim_wait_ends_the_command(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    ok_on(&store, &first, Save::data(data(1))).await;
    faults.hold();
    drop(first);
    eventually("the unlock reaches storage", || faults.calls("unlock") == 1).await;
    let reclaiming = spawn(&store, env.handle(&store, owner, Some(id)), create(), T);
    settle().await;
    store.shutdown().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), reclaiming).await;
    faults.release();
    let answer = ended
        .expect("the command ends after shutdown")
        .expect("no panic");
    assert!(
        answer.is_err(),
        "a shut-down store answers with an error: {answer:?}"
    );
}

/// An instance `owner` holds through a lock-bound handle, found by `key`, with data `{a: 1}`.
async fn held_with_key(
    env: &Env,
    store: &InstanceStore,
    owner: OwnerId,
) -> (InstanceHandle, InstanceId, KeyId) {
    let (id, key) = (InstanceId::new(), KeyId::new());
    let handle = env.handle(store, owner, Some(id));
    ok_on(store, &handle, create()).await;
    let save = Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(1))
    };
    ok_on(store, &handle, save).await;
    (handle, id, key)
}

/// After both handles are done: another owner can load the instance, so no lock is left with a
/// live owner that no handle holds. Background unlocks may still be on their way (real time,
/// bounded), but the lease never ends here.
async fn nothing_stays_locked(env: &Env, id: InstanceId) {
    let (other_store, b) = other_host(env, None).await;
    let mut answer = load_as(&other_store, b, id).await;
    for _ in 0..400 {
        if answer.is_ok() {
            return;
        }
        settle().await;
        answer = load_as(&other_store, b, id).await;
    }
    panic!("another owner still cannot load the instance: {answer:?}");
}

/// A handle's save with `unlock` has committed in storage but its answer is not back yet when a
/// `LoadByKey` of the same owner finds the instance: the provider grants it the lock (the
/// instance is unlocked in storage). The load must end holding the lock, or with an error and
/// no lock left in storage; never with a lock taken in storage that no handle holds, which
/// would keep the instance from everyone until the owner's lease ends.
pub async fn a_load_by_key_behind_the_same_owners_unlocking_save_strands_no_lock(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let (first, id, key) = held_with_key(env, &store, owner).await;
    let saves = faults.completed("save");
    faults.hold_after("save");
    let unlocking = spawn(&store, first, Save::data(data(2)).and_unlock(), T);
    eventually("the unlocking save committed", || {
        faults.completed("save") == saves + 1
    })
    .await;
    let by_key = store.create_handle_for(Some(owner), None);
    let loaded = store.execute(&by_key, LoadByKey::new(key), T).await;
    faults.release_after("save");
    let unlocked = finish(unlocking)
        .await
        .expect("the unlocking save succeeds");
    assert_eq!(unlocked.lock_version, None);
    match loaded {
        Ok(view) => {
            assert_eq!(view.instance, Some(id));
            assert!(view.lock_version.is_some(), "it holds the lock: {view:?}");
            // The lock is really its own: a save on it works, and unlocks.
            ok_on(&store, &by_key, Save::data(data(3)).and_unlock()).await;
        }
        Err(e) => {
            assert!(
                matches!(e, StoreError::HandleConflict { .. }),
                "a clean error: {e:?}"
            );
            assert!(by_key.lock_version().is_none());
        }
    }
    drop(by_key);
    nothing_stays_locked(env, id).await;
}

/// Two handles of one owner load one key at once: the first's load has locked the instance in
/// storage but not answered yet when the second's load reclaims the owner's lock and claims
/// it. The first then gets `HandleConflict`, and must not unlock what is now the second's lock.
pub async fn a_load_by_key_losing_to_another_handle_leaves_that_handles_lock_alone(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let (first, id, key) = held_with_key(env, &store, owner).await;
    ok_on(&store, &first, Save::data(data(1)).and_unlock()).await;
    let loads = faults.completed("load");
    faults.hold_next_after("load");
    let losing = spawn(
        &store,
        store.create_handle_for(Some(owner), None),
        LoadByKey::new(key),
        T,
    );
    eventually("the first load committed", || {
        faults.completed("load") == loads + 1
    })
    .await;
    let winner = store.create_handle_for(Some(owner), None);
    let won = ok_on(&store, &winner, LoadByKey::new(key)).await;
    assert_eq!(won.instance, Some(id));
    faults.release_after("load");
    assert_err!(finish(losing).await, StoreError::HandleConflict { .. });
    settle().await;
    // The winner still holds its lock: its save works.
    ok_on(&store, &winner, Save::data(data(2))).await;
    ok_on(&store, &winner, Save::data(data(3)).and_unlock()).await;
    nothing_stays_locked(env, id).await;
}

/// A handle is acquiring an instance by id (its claim taken, its load not yet in storage) when
/// a `LoadByKey` of the same owner is granted the lock by the provider and refused by the
/// runtime (`HandleConflict`). When the acquiring load then fails, the lock taken in storage
/// must still be released.
pub async fn a_lock_refused_to_a_load_by_key_is_released_when_the_acquiring_handle_fails(
    env: &Env,
) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    // An uninitialized instance found by `key`, unlocked.
    let creating = store.create_handle_for(Some(owner), None);
    let created = ok_on(
        &store,
        &creating,
        LoadByKey {
            accept_uninitialized: true,
            ..LoadByKey::new(key)
        },
    )
    .await;
    let id = created.instance.expect("an instance");
    // Without data it stays uninitialized.
    ok_on(&store, &creating, Save::default().and_unlock()).await;
    faults.hold_next_before("load");
    let reached = faults.reached("load");
    // A plain load refuses an uninitialized instance: this acquiring command will fail.
    let failing = spawn(
        &store,
        env.handle(&store, owner, Some(id)),
        Load::default(),
        T,
    );
    eventually("the load by id waits before storage", || {
        faults.reached("load") == reached + 1
    })
    .await;
    let by_key = store.create_handle_for(Some(owner), None);
    let refused = store
        .execute(
            &by_key,
            LoadByKey {
                accept_uninitialized: true,
                ..LoadByKey::new(key)
            },
            T,
        )
        .await;
    assert_err!(refused, StoreError::HandleConflict { .. });
    faults.release_before("load");
    assert_err!(finish(failing).await, StoreError::InstanceNotReady { .. });
    drop(by_key);
    nothing_stays_locked(env, id).await;
}

/// As above, for `TryLoadRunnable`: it asked the provider before another handle of its owner
/// claimed the instance (so the instance was not among those to skip); the other handle's
/// acquiring save then fails. The lock `TryLoadRunnable` was granted and refused is released.
pub async fn a_lock_refused_to_try_load_runnable_is_released_when_the_acquiring_handle_fails(
    env: &Env,
) {
    let (store, faults) = env.store_with(long_lease(env), Vec::new());
    let owner = env.owner(&store, Some("orders")).await;
    let (id, theirs) = (
        InstanceId::new(),
        key_held_elsewhere(env, &store, owner).await,
    );
    let h = env.handle(&store, owner, Some(id));
    ok_on(&store, &h, create()).await;
    ok_on(&store, &h, executing().and_unlock()).await;
    faults.hold_next_before("try_load_runnable");
    let reached = faults.reached("try_load_runnable");
    let tlr = spawn(
        &store,
        store.create_handle_for(Some(owner), None),
        Command::TryLoadRunnable,
        T,
    );
    eventually("TryLoadRunnable waits before storage", || {
        faults.reached("try_load_runnable") == reached + 1
    })
    .await;
    faults.hold_next_before("save");
    let reached = faults.reached("save");
    let saving = spawn(
        &store,
        env.handle(&store, owner, Some(id)),
        colliding(theirs),
        T,
    );
    eventually("the acquiring save waits before storage", || {
        faults.reached("save") == reached + 1
    })
    .await;
    faults.release_before("try_load_runnable");
    let found = finish(tlr).await;
    assert!(
        matches!(&found, Err(StoreError::HandleConflict { .. }))
            || matches!(&found, Ok(v) if v.instance.is_none()),
        "the instance another handle is acquiring is refused: {found:?}"
    );
    faults.release_before("save");
    assert_err!(
        finish(saving).await,
        StoreError::InstanceKeyCollision { .. }
    );
    nothing_stays_locked(env, id).await;
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! races_cases {
    ($make:path) => {
        $crate::__case!($make, races::a_claim_taken_while_the_background_unlock_returns_survives);
        $crate::__case!($make, races::freeing_a_handle_while_its_load_runs_does_not_strand_the_lock);
        $crate::__case!($make, races::a_failed_takeover_of_a_pending_unlock_still_releases_the_lock);
        $crate::__case!($make, races::try_load_runnable_skips_instances_other_handles_are_acquiring);
        $crate::__case!($make, races::delete_owner_racing_a_renewal_registers_no_replacement);
        $crate::__case!($make, races::shutdown_during_a_reclaim_wait_ends_the_command);
        $crate::__case!($make, races::a_load_by_key_behind_the_same_owners_unlocking_save_strands_no_lock);
        $crate::__case!($make, races::a_load_by_key_losing_to_another_handle_leaves_that_handles_lock_alone);
        $crate::__case!($make, races::a_lock_refused_to_a_load_by_key_is_released_when_the_acquiring_handle_fails);
        $crate::__case!($make, races::a_lock_refused_to_try_load_runnable_is_released_when_the_acquiring_handle_fails);
    };
}
