//! SPEC §5: instance locks, lock epochs, takeover, conflicts, lock-retry policies, background unlock.
//!
//! | rule (SPEC §5) | cases |
//! |---|---|
//! | `lock_version` starts at 1 and grows by one only when the lock passes to a different owner | `lock_version_starts_at_one_and_grows_only_when_the_lock_passes_to_another_owner` |
//! | locked by another live owner → `InstanceLocked { owner, owner_metadata }` with the holder's readable metadata | `second_owner_gets_instance_locked_with_holder_id_and_readable_metadata` |
//! | a lock whose owner's lease has ended is taken over at once, `lock_version` + 1 | `expired_holders_lock_is_taken_over_with_lock_version_plus_one` |
//! | a lock-bound handle whose lock is gone (lease ended, taken over) → `LockLost`, handle freed, nothing changed | `stale_handle_gets_lock_lost_and_is_freed` |
//! | same owner through another live handle → `HandleConflict` (by id and by key) | `second_live_handle_of_the_same_owner_gets_handle_conflict` |
//! | same owner, freed handle not yet unlocked → reclaimed at the same `lock_version` | `freed_handles_lock_is_reclaimed_by_a_new_handle_at_the_same_version`, `reclaim_waits_for_an_unlock_already_in_flight` |
//! | freeing a lock-bound handle without saving unlocks in the background | `freed_handles_lock_is_released_in_the_background` |
//! | `NoRetry` (default) answers `InstanceLocked` at once | `no_retry_answers_instance_locked_at_once` |
//! | `BasicRetry` retries every 5 s; gives up with the last `InstanceLocked` when the next wait would pass the timeout | `basic_retry_retries_every_five_seconds_until_the_lock_is_free`, `basic_retry_gives_up_with_instance_locked_before_the_timeout` |
//! | `AggressiveRetry`: 100 ms, growing by a random factor, capped at 10 s | `aggressive_retry_starts_at_100ms_grows_and_is_capped_at_ten_seconds` |
//! | only load commands retry | `only_load_commands_retry` |
//!
//! Locks ending with a save (`unlock`/`complete`) are in `save`; ending with the lease in `owners`.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use instore::{
    bag, CreateOwner, InstanceHandle, InstanceId, InstanceStore, InstanceValue, InstanceView,
    KeyId, Load, LoadByKey, LockRetry, OwnerId, Save, StoreError, StoreSettings,
};

use crate::harness::{
    assert_err, create, data, eventually, finish, load_as, lock_new, ok_on, settle, spawn, Env, T,
};

fn unlock() -> Save {
    Save {
        unlock: true,
        ..Save::default()
    }
}

/// A lease no case outlives, so only the lock rules under test are in play; with `retry`.
fn long_lease(env: &Env, lock_retry: LockRetry) -> StoreSettings {
    let (lease, renew_every) = (Duration::from_secs(3600), Duration::from_secs(1800));
    StoreSettings {
        lease,
        renew_every,
        lock_retry,
        ..env.settings()
    }
}

fn is_locked_by(result: &Result<InstanceView, StoreError>, holder: OwnerId) -> bool {
    matches!(result, Err(StoreError::InstanceLocked { owner, .. }) if *owner == holder)
}

/// Loads `id` as `owner`, unlocks it, and returns the `lock_version` it was held at.
async fn lock_version_as(env: &Env, store: &InstanceStore, owner: OwnerId, id: InstanceId) -> u64 {
    let handle = env.handle(store, owner, Some(id));
    let view = ok_on(store, &handle, create()).await;
    ok_on(store, &handle, unlock()).await;
    view.lock_version.expect("a load holds the lock")
}

/// An owner (on its own long-lease store) holding a new instance with data `{a: 1}`.
struct Holder {
    store: InstanceStore,
    owner: OwnerId,
    handle: InstanceHandle,
    id: InstanceId,
}

async fn holder(env: &Env) -> Holder {
    holder_on(
        env,
        env.store_with(long_lease(env, LockRetry::NoRetry), Vec::new())
            .0,
    )
    .await
}

async fn holder_on(env: &Env, store: InstanceStore) -> Holder {
    let owner = env.owner(&store, Some("orders")).await;
    let (handle, id) = lock_new(&store, owner).await;
    Holder {
        store,
        owner,
        handle,
        id,
    }
}

/// The epoch starts at 1, stays while the same owner re-locks, and grows by exactly one each
/// time another owner takes the lock.
pub async fn lock_version_starts_at_one_and_grows_only_when_the_lock_passes_to_another_owner(
    env: &Env,
) {
    let (sa, sb) = (env.store(), env.store());
    let (a, b) = (env.owner(&sa, None).await, env.owner(&sb, None).await);
    let id = InstanceId::new();
    assert_eq!(lock_version_as(env, &sa, a, id).await, 1, "new");
    assert_eq!(lock_version_as(env, &sa, a, id).await, 1, "same owner");
    assert_eq!(lock_version_as(env, &sb, b, id).await, 2, "another owner");
    assert_eq!(lock_version_as(env, &sb, b, id).await, 2, "same owner");
    assert_eq!(lock_version_as(env, &sa, a, id).await, 3, "another owner");
}

/// Another owner finding the instance locked learns who holds it and the holder's metadata,
/// without its write-only values — on a load and on a save that would acquire.
pub async fn second_owner_gets_instance_locked_with_holder_id_and_readable_metadata(env: &Env) {
    let sa = env.store();
    let site = ("site", InstanceValue::new("eu-1"));
    let token = ("token", InstanceValue::write_only("secret"));
    let command = CreateOwner {
        metadata: bag([site, token]),
        ..CreateOwner::host_type("orders")
    };
    let a = env.owner_with(&sa, command).await;
    let id = InstanceId::new();
    let held = env.handle(&sa, a, Some(id));
    ok_on(&sa, &held, create()).await;

    let sb = env.store();
    let b = env.owner(&sb, None).await;
    match load_as(&sb, b, id).await {
        Err(StoreError::InstanceLocked {
            instance,
            owner,
            owner_metadata,
        }) => {
            assert_eq!((instance, owner), (id, a));
            assert_eq!(owner_metadata, bag([("site", "eu-1")]), "readable only");
        }
        other => panic!("expected InstanceLocked, got {other:?}"),
    }
    let save = sb
        .execute(&env.handle(&sb, b, Some(id)), Save::data(data(2)), T)
        .await;
    assert!(is_locked_by(&save, a), "{save:?}");
}

/// Once the holder's lease has ended (its renewals failing), another owner takes the lock at
/// once, with `lock_version` increased by exactly one and the data intact.
pub async fn expired_holders_lock_is_taken_over_with_lock_version_plus_one(env: &Env) {
    let settings = StoreSettings {
        auto_recover_owner: false,
        ..env.settings()
    };
    let (sa, faults) = env.store_with(settings, Vec::new());
    let a = env.owner(&sa, None).await;
    let id = InstanceId::new();
    let held = env.handle(&sa, a, Some(id));
    let version = ok_on(&sa, &held, create())
        .await
        .lock_version
        .expect("locked");
    ok_on(&sa, &held, Save::data(data(1))).await;
    let sb = env
        .store_with(long_lease(env, LockRetry::NoRetry), Vec::new())
        .0;
    let b = env.owner(&sb, None).await;

    faults.fail_renewals.store(true, SeqCst);
    env.clock.advance(Duration::from_secs(30));
    let early = load_as(&sb, b, id).await;
    assert!(
        is_locked_by(&early, a),
        "the lease lasts until 60 s: {early:?}"
    );
    env.clock.advance(Duration::from_secs(31));
    let view = load_as(&sb, b, id).await.expect("taken over");
    assert_eq!(view.lock_version, Some(version + 1));
    assert_eq!(view.data, data(1));
}

/// A lock-bound handle whose lock is gone answers `LockLost` and is freed, and its command
/// changes nothing. Here the holder's lease is ended in storage by another process (as an
/// operator deleting the owner would) while the holder's store still believes it alive.
pub async fn stale_handle_gets_lock_lost_and_is_freed(env: &Env) {
    let h = holder(env).await;
    let other_id = InstanceId::new();
    let other = env.handle(&h.store, h.owner, Some(other_id));
    ok_on(&h.store, &other, create()).await;

    env.provider
        .delete_owner(h.owner)
        .await
        .expect("the lease ends in storage");
    let sb = env.store();
    let b = env.owner(&sb, None).await;
    let taker = env.handle(&sb, b, Some(h.id));
    assert_eq!(ok_on(&sb, &taker, create()).await.lock_version, Some(2));
    ok_on(&sb, &taker, Save::data(data(2))).await;

    // Taken over: the stale save is refused and changes nothing.
    let stale = h.store.execute(&h.handle, Save::data(data(3)), T).await;
    assert_err!(stale, StoreError::LockLost { instance } if instance == h.id);
    assert!(h.handle.is_freed(), "LockLost frees the handle");
    let again = h.store.execute(&h.handle, Load::default(), T).await;
    assert!(again.is_err(), "a freed handle runs nothing");
    assert_eq!(ok_on(&sb, &taker, Load::default()).await.data, data(2));

    // Not taken over, but the lease is gone: a re-read is refused too.
    let stale = h.store.execute(&other, Load::default(), T).await;
    assert_err!(stale, StoreError::LockLost { instance } if instance == other_id);
    assert!(other.is_freed());
}

/// While one handle of an owner holds the lock, another live handle of the same owner gets
/// `HandleConflict` (load, save, or load by key), and the holder keeps working.
pub async fn second_live_handle_of_the_same_owner_gets_handle_conflict(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    let keyed = Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(1))
    };
    ok_on(&store, &first, keyed).await;

    let second = env.handle(&store, owner, Some(id));
    let load = store.execute(&second, create(), T).await;
    assert_err!(load, StoreError::HandleConflict { instance } if instance == id);
    let save = store.execute(&second, Save::data(data(9)), T).await;
    assert_err!(save, StoreError::HandleConflict { instance } if instance == id);
    let unbound = store.create_handle_for(Some(owner), None);
    let by_key = store.execute(&unbound, LoadByKey::new(key), T).await;
    assert_err!(by_key, StoreError::HandleConflict { instance } if instance == id);

    let view = ok_on(&store, &first, Load::default()).await;
    assert_eq!(view.data, data(1), "the conflicting save changed nothing");
    assert_eq!(view.lock_version, Some(1));
}

/// A new handle of the same owner reclaims the lock of a freed handle at the same version, and
/// the freed handle's background unlock does not take it away afterwards.
pub async fn freed_handles_lock_is_reclaimed_by_a_new_handle_at_the_same_version(env: &Env) {
    let h = holder(env).await;
    let version = h.handle.lock_version().expect("holds the lock");
    drop(h.handle);
    let reclaimed = env.handle(&h.store, h.owner, Some(h.id));
    let view = ok_on(&h.store, &reclaimed, create()).await;
    assert_eq!(view.lock_version, Some(version));
    assert_eq!(view.data, data(1));

    settle().await;
    let sb = env.store();
    let b = env.owner(&sb, None).await;
    let taken = load_as(&sb, b, h.id).await;
    assert!(is_locked_by(&taken, h.owner), "the reclaimed lock stands");
    ok_on(&h.store, &reclaimed, Save::data(data(2))).await;
}

/// A new handle that wants the instance while the freed handle's unlock is already on its way to
/// storage waits for it, then holds the lock at the same version.
pub async fn reclaim_waits_for_an_unlock_already_in_flight(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env, LockRetry::NoRetry), Vec::new());
    let h = holder_on(env, store).await;
    let version = h.handle.lock_version();

    faults.hold();
    drop(h.handle);
    eventually("the unlock reaches storage", || faults.calls("unlock") == 1).await;
    let task = spawn(
        &h.store,
        env.handle(&h.store, h.owner, Some(h.id)),
        create(),
        T,
    );
    settle().await;
    faults.release();
    let view = finish(task).await.expect("locked after the unlock");
    assert_eq!(view.lock_version, version);
    assert_eq!(view.data, data(1));
}

/// Freeing a lock-bound handle without saving releases the lock in the background: another
/// owner can take the instance without any clock movement.
pub async fn freed_handles_lock_is_released_in_the_background(env: &Env) {
    let (store, faults) = env.store_with(long_lease(env, LockRetry::NoRetry), Vec::new());
    let h = holder_on(env, store).await;
    let sb = env.store();
    let b = env.owner(&sb, None).await;

    faults.hold();
    h.handle.free();
    eventually("the unlock reaches storage", || faults.calls("unlock") == 1).await;
    let early = load_as(&sb, b, h.id).await;
    assert!(
        is_locked_by(&early, h.owner),
        "locked until the unlock runs"
    );
    faults.release();
    for _ in 0..2000 {
        match load_as(&sb, b, h.id).await {
            Ok(view) => return assert_eq!(view.data, data(1)),
            Err(StoreError::InstanceLocked { .. }) => settle().await,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    panic!("the lock was never released in the background");
}

/// With the default `NoRetry`, a load of a locked instance answers `InstanceLocked` at once,
/// after a single attempt.
pub async fn no_retry_answers_instance_locked_at_once(env: &Env) {
    let h = holder(env).await;
    let (sb, faults) = env.store_with(env.settings(), Vec::new());
    assert_eq!(sb.settings().lock_retry, LockRetry::NoRetry, "the default");
    let b = env.owner(&sb, None).await;
    let result = finish(spawn(&sb, env.handle(&sb, b, Some(h.id)), create(), T)).await;
    assert!(is_locked_by(&result, h.owner), "{result:?}");
    assert_eq!(faults.calls("load"), 1);
}

/// `BasicRetry` tries again every 5 s and succeeds once the holder lets go.
pub async fn basic_retry_retries_every_five_seconds_until_the_lock_is_free(env: &Env) {
    let h = holder(env).await;
    let (sb, faults) = env.store_with(long_lease(env, LockRetry::BasicRetry), Vec::new());
    let b = env.owner(&sb, None).await;
    let task = spawn(&sb, env.handle(&sb, b, Some(h.id)), create(), T);
    eventually("the first attempt", || faults.calls("load") == 1).await;
    settle().await;
    env.clock.advance(Duration::from_millis(4900));
    settle().await;
    assert_eq!(faults.calls("load"), 1, "no retry before 5 s");
    env.clock.advance(Duration::from_millis(100));
    eventually("the retry at 5 s", || faults.calls("load") == 2).await;
    settle().await;

    ok_on(&h.store, &h.handle, unlock()).await;
    env.clock.advance(Duration::from_secs(5));
    let view = finish(task).await.expect("the retry at 10 s gets the lock");
    assert_eq!(view.lock_version, Some(2));
    assert_eq!(faults.calls("load"), 3);
}

/// `BasicRetry` stops when the next wait would pass the command's timeout and returns the last
/// `InstanceLocked` — before the timeout, not `Timeout`.
pub async fn basic_retry_gives_up_with_instance_locked_before_the_timeout(env: &Env) {
    let h = holder(env).await;
    let (sb, faults) = env.store_with(long_lease(env, LockRetry::BasicRetry), Vec::new());
    let b = env.owner(&sb, None).await;
    // Attempts at 0, 5 and 10 s; a wait until 15 s would pass the 12 s timeout.
    let handle = env.handle(&sb, b, Some(h.id));
    let task = spawn(&sb, handle, create(), Duration::from_secs(12));
    for attempts in 1..=2 {
        eventually("an attempt", || faults.calls("load") == attempts).await;
        settle().await;
        env.clock.advance(Duration::from_secs(5));
    }
    let result = finish(task).await;
    assert!(is_locked_by(&result, h.owner), "{result:?}");
    assert_eq!(faults.calls("load"), 3);
}

/// `AggressiveRetry` retries after 100 ms, then after a wait grown by a factor of 1.5–2.5 each
/// time, never more than 10 s.
pub async fn aggressive_retry_starts_at_100ms_grows_and_is_capped_at_ten_seconds(env: &Env) {
    let h = holder(env).await;
    let settings = long_lease(env, LockRetry::AggressiveRetry);
    let (sb, faults) = env.store_with(settings, Vec::new());
    let b = env.owner(&sb, None).await;
    let handle = env.handle(&sb, b, Some(h.id));
    let task = spawn(&sb, handle, create(), Duration::from_secs(600));
    let ms = Duration::from_millis;
    // Advances by `first`, checks no attempt happened, then by `rest`, and waits for one.
    let step = |first: Duration, rest: Duration, attempts: usize| {
        let faults = faults.clone();
        async move {
            settle().await;
            env.clock.advance(first);
            settle().await;
            assert_eq!(faults.calls("load"), attempts, "retried before {first:?}");
            env.clock.advance(rest);
            let next = || faults.calls("load") == attempts + 1;
            eventually("the next attempt", next).await;
        }
    };
    eventually("the first attempt", || faults.calls("load") == 1).await;
    step(ms(99), ms(1), 1).await; // exactly 100 ms
    step(ms(149), ms(101), 2).await; // 150..250 ms: it grew

    // Each wait is at most 10 s: advancing 10 s always brings exactly one more attempt. After
    // 12 growths of at least 1.5 the wait would exceed 10 s, so it is capped from then on.
    for attempts in 3..14 {
        step(ms(0), ms(10_000), attempts).await;
    }
    step(ms(9_900), ms(100), 14).await; // capped at exactly 10 s

    ok_on(&h.store, &h.handle, unlock()).await;
    env.clock.advance(Duration::from_secs(10));
    let view = finish(task).await.expect("the next retry gets the lock");
    assert_eq!(view.lock_version, Some(2));
}

/// Saves (and every other command) never retry: a save that would acquire a locked instance
/// answers `InstanceLocked` at once even under `BasicRetry`.
pub async fn only_load_commands_retry(env: &Env) {
    let h = holder(env).await;
    let (sb, faults) = env.store_with(long_lease(env, LockRetry::BasicRetry), Vec::new());
    let b = env.owner(&sb, None).await;
    let save = spawn(&sb, env.handle(&sb, b, Some(h.id)), Save::data(data(2)), T);
    let result = finish(save).await; // no clock movement: a retry would never return
    assert!(is_locked_by(&result, h.owner), "{result:?}");
    assert_eq!(faults.calls("save"), 1);
}

/// Lists this module's cases for [`crate::provider_tests!`] (unformatted: one line per case).
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! locks_cases {
    ($make:path) => {
        $crate::__case!($make, locks::lock_version_starts_at_one_and_grows_only_when_the_lock_passes_to_another_owner);
        $crate::__case!($make, locks::second_owner_gets_instance_locked_with_holder_id_and_readable_metadata);
        $crate::__case!($make, locks::expired_holders_lock_is_taken_over_with_lock_version_plus_one);
        $crate::__case!($make, locks::stale_handle_gets_lock_lost_and_is_freed);
        $crate::__case!($make, locks::second_live_handle_of_the_same_owner_gets_handle_conflict);
        $crate::__case!($make, locks::freed_handles_lock_is_reclaimed_by_a_new_handle_at_the_same_version);
        $crate::__case!($make, locks::reclaim_waits_for_an_unlock_already_in_flight);
        $crate::__case!($make, locks::freed_handles_lock_is_released_in_the_background);
        $crate::__case!($make, locks::no_retry_answers_instance_locked_at_once);
        $crate::__case!($make, locks::basic_retry_retries_every_five_seconds_until_the_lock_is_free);
        $crate::__case!($make, locks::basic_retry_gives_up_with_instance_locked_before_the_timeout);
        $crate::__case!($make, locks::aggressive_retry_starts_at_100ms_grows_and_is_capped_at_ten_seconds);
        $crate::__case!($make, locks::only_load_commands_retry);
    };
}
