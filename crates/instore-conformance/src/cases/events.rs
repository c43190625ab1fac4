//! SPEC §8: HasRunnableWorkflow and wait_for_events, pushed wake-ups.
//!
//! Most cases set the fallback poll to an hour and never move the clock that far, so only a
//! push (or a wake-up timed for the moment something becomes runnable) can deliver the event.
//!
//! | rule (SPEC §4, §8) | cases |
//! |---|---|
//! | waiting needs an owner with a host type; the `CreateOwner` handle with a host type is bound to the event | `wait_for_events_needs_an_owner_with_a_host_type`, `a_due_timer_wakes_a_waiting_owner_without_polling` |
//! | ▲ pushed: a due timer wakes waiting owners as the clock reaches it | `a_due_timer_wakes_a_waiting_owner_without_polling`, `a_later_timer_wakes_after_an_earlier_one_was_drained` |
//! | ▲ pushed: a save that unlocks an `Executing` instance wakes waiting owners (also of another store) | `unlocking_an_executing_instance_wakes_a_waiting_owner_without_polling`, `an_instance_released_through_another_store_wakes_a_waiting_owner_without_polling` |
//! | ▲ pushed: a holder's lease ending makes its instances runnable (recovery) | `a_dead_holders_lease_ending_makes_its_instances_runnable` |
//! | ▲ fallback poll (default 5 s) for changes that could not notify | `the_fallback_poll_finds_instances_made_runnable_without_a_push` |
//! | signalled to every live owner of the host type, and only to them | `every_live_owner_of_the_host_type_is_signalled` |
//! | the event stays signalled until a `TryLoadRunnable` finds nothing | `the_event_stays_until_try_load_runnable_finds_nothing` |
//! | a wait ends empty when its timeout passes or its handle is freed | `wait_for_events_returns_nothing_when_its_timeout_passes`, `freeing_the_handle_ends_the_wait_with_no_events` |
//! | one wait per handle (`CommandOverlap`) | `a_second_wait_on_one_handle_is_command_overlap` |
//! | a lost owner's wait ends with `OwnerLost` | `a_lost_owners_wait_ends_with_owner_lost` |
//!
//! Which instances are runnable, and the order `TryLoadRunnable` picks them in, is in `runnable`.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, CreateOwner, InstanceEvent, InstanceHandle, InstanceId, InstanceStore, OwnerId, Save,
    StoreError, StoreSettings,
};
use tokio::task::JoinHandle;

use crate::harness::{
    assert_err, create, eventually, executing, finish, ok_on, settle, try_load_runnable, Env,
    Faults, T,
};

const HOUR: Duration = Duration::from_secs(3600);
const RUNNABLE: [InstanceEvent; 1] = [InstanceEvent::HasRunnableWorkflow];

type Wait = JoinHandle<Result<Vec<InstanceEvent>, StoreError>>;

/// Settings under which only pushes and timed wake-ups deliver events: the poll is an hour away.
fn push_only(env: &Env) -> StoreSettings {
    StoreSettings {
        detection_poll: HOUR,
        ..env.settings()
    }
}

/// Registers an owner and returns the handle `CreateOwner` ran on (bound to the event).
async fn waiter(store: &InstanceStore, command: CreateOwner) -> (Arc<InstanceHandle>, OwnerId) {
    let handle = store.create_handle_for(None, None);
    let owner = ok_on(store, &handle, command).await.owner;
    (Arc::new(handle), owner.expect("bound to the owner"))
}

fn spawn_wait(store: &InstanceStore, handle: &Arc<InstanceHandle>, timeout: Duration) -> Wait {
    let (store, handle) = (store.clone(), handle.clone());
    tokio::spawn(async move { store.wait_for_events(&handle, timeout).await })
}

/// Creates an instance locked by `owner` (so it gets the owner's host type) and saves it with
/// `save`, which should unlock it.
async fn save_new(store: &InstanceStore, owner: OwnerId, save: Save) -> InstanceId {
    let id = InstanceId::new();
    let handle = store.create_handle_for(Some(owner), Some(id));
    ok_on(store, &handle, create()).await;
    ok_on(store, &handle, save).await;
    id
}

/// Waiting for events needs a handle whose owner has a host type.
pub async fn wait_for_events_needs_an_owner_with_a_host_type(env: &Env) {
    let store = env.store();
    let (handle, _) = waiter(&store, CreateOwner::default()).await;
    let result = finish(spawn_wait(&store, &handle, T)).await;
    assert_err!(result, StoreError::HostTypeRequired);
}

/// A timer falling due wakes the owner waiting on its `CreateOwner` handle as the clock reaches
/// the due time — not before, and without a poll.
pub async fn a_due_timer_wakes_a_waiting_owner_without_polling(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let due = env.now().plus(Duration::from_secs(10));
    let timed = Save::data(bag([("step", 1i64)])).with_timer(due);
    let id = save_new(&store, owner, timed.and_unlock()).await;

    let wait = spawn_wait(&store, &handle, HOUR);
    env.clock.advance(Duration::from_secs(9));
    settle().await;
    assert!(!wait.is_finished(), "the timer is not due yet");
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);
    assert_eq!(try_load_runnable(&store, owner).await.1, Some(id));
}

/// Regression: once the host has drained the timer that fell due (its `TryLoadRunnable` found
/// nothing more), the next timer, known all along, still wakes it on time — the detector must
/// look again rather than sleep until the fallback poll.
pub async fn a_later_timer_wakes_after_an_earlier_one_was_drained(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let at = |secs| env.now().plus(Duration::from_secs(secs));
    let data = || Save::data(bag([("step", 1i64)]));
    let first = save_new(&store, owner, data().with_timer(at(1)).and_unlock()).await;
    let second = save_new(&store, owner, data().with_timer(at(2)).and_unlock()).await;

    let wait = spawn_wait(&store, &handle, HOUR);
    settle().await;
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(
        finish(wait).await.expect("the first wait succeeds"),
        RUNNABLE
    );
    let (loaded, id) = try_load_runnable(&store, owner).await;
    assert_eq!(id, Some(first));
    ok_on(&store, &loaded, data().and_complete()).await;
    assert_eq!(try_load_runnable(&store, owner).await.1, None, "drained");

    let wait = spawn_wait(&store, &handle, HOUR);
    settle().await;
    assert!(!wait.is_finished(), "the second timer is not due yet");
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(
        finish(wait).await.expect("the second wait succeeds"),
        RUNNABLE
    );
    assert_eq!(try_load_runnable(&store, owner).await.1, Some(second));
}

/// A save that leaves an `Executing` instance unlocked wakes a waiting owner at once, with the
/// clock standing still.
pub async fn unlocking_an_executing_instance_wakes_a_waiting_owner_without_polling(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let wait = spawn_wait(&store, &handle, HOUR);
    settle().await;
    assert!(!wait.is_finished(), "nothing is runnable yet");

    let id = save_new(&store, owner, executing()).await;
    assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);
    assert_eq!(try_load_runnable(&store, owner).await.1, Some(id));
}

/// An `Executing` instance released by an owner of another store over the same storage wakes a
/// waiting owner of the same host type, without a poll.
pub async fn an_instance_released_through_another_store_wakes_a_waiting_owner_without_polling(
    env: &Env,
) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let wait = spawn_wait(&store, &handle, HOUR);
    let other_store = env.store();
    let other = env.owner(&other_store, Some("orders")).await;
    settle().await;
    assert!(!wait.is_finished(), "nothing is runnable yet");

    let id = save_new(&other_store, other, executing()).await;
    assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);
    assert_eq!(try_load_runnable(&store, owner).await.1, Some(id));
}

/// When a holder dies (its renewals fail), its instances become runnable the moment its lease
/// ends, and a waiting owner of the same host type is woken to take them over.
pub async fn a_dead_holders_lease_ending_makes_its_instances_runnable(env: &Env) {
    let dead_settings = StoreSettings {
        auto_recover_owner: false,
        ..env.settings()
    };
    let (dead_store, faults) = env.store_with(dead_settings, Vec::new());
    let dead = env.owner(&dead_store, Some("orders")).await;
    let id = InstanceId::new();
    let held = dead_store.create_handle_for(Some(dead), Some(id));
    ok_on(&dead_store, &held, create()).await;
    ok_on(&dead_store, &held, Save::data(bag([("step", 1i64)]))).await; // keeps the lock

    let settings = StoreSettings {
        lease: HOUR,
        renew_every: HOUR / 2,
        ..push_only(env)
    };
    let store = env.store_with(settings, Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let wait = spawn_wait(&store, &handle, 2 * HOUR);
    faults.fail_renewals.store(true, SeqCst);
    env.clock.advance(Duration::from_secs(30));
    settle().await;
    assert!(!wait.is_finished(), "the holder's lease lasts until 60 s");
    env.clock.advance(Duration::from_secs(30));
    assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);

    let (taken, instance) = try_load_runnable(&store, owner).await;
    assert_eq!(instance, Some(id));
    assert_eq!(taken.lock_version(), Some(2), "taken over");
}

/// A change no push reports is found by the fallback poll, 5 s by default.
pub async fn the_fallback_poll_finds_instances_made_runnable_without_a_push(env: &Env) {
    let deaf = Faults::without_pushes();
    let (store, faults) = env.store_with_faults(env.settings(), Vec::new(), deaf);
    assert_eq!(store.settings().detection_poll, Duration::from_secs(5));
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    // The new owner's host type is looked at once; the next look is the poll at 5 s.
    let looked = || faults.calls("next_runnable") > 0;
    eventually("the first detection for the new owner", looked).await;
    settle().await;
    let wait = spawn_wait(&store, &handle, HOUR);

    let other_store = env.store();
    let other = env.owner(&other_store, Some("orders")).await;
    let id = save_new(&other_store, other, executing()).await;
    env.clock.advance(Duration::from_millis(4900));
    settle().await;
    assert!(
        !wait.is_finished(),
        "no push reached this store, and the poll is not due"
    );
    env.clock.advance(Duration::from_millis(100));
    assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);
    assert_eq!(try_load_runnable(&store, owner).await.1, Some(id));
}

/// Every live owner of the instance's host type is signalled, in this store and in others; an
/// owner of another host type is not.
pub async fn every_live_owner_of_the_host_type_is_signalled(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let other_store = env.store_with(push_only(env), Vec::new()).0;
    let (first, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let (second, _) = waiter(&other_store, CreateOwner::host_type("orders")).await;
    let (unrelated, _) = waiter(&store, CreateOwner::host_type("billing")).await;
    let waits = [
        spawn_wait(&store, &first, HOUR),
        spawn_wait(&other_store, &second, HOUR),
    ];
    let unrelated_wait = spawn_wait(&store, &unrelated, HOUR);

    save_new(&store, owner, executing()).await;
    for wait in waits {
        assert_eq!(finish(wait).await.expect("the wait succeeds"), RUNNABLE);
    }
    settle().await;
    assert!(
        !unrelated_wait.is_finished(),
        "another host type is not signalled"
    );
    unrelated.free();
    assert_eq!(
        finish(unrelated_wait).await.expect("the wait ends"),
        Vec::new()
    );
}

/// The event stays signalled (a new wait returns at once) until a `TryLoadRunnable` finds
/// nothing; then waits block again.
pub async fn the_event_stays_until_try_load_runnable_finds_nothing(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let id = save_new(&store, owner, executing()).await;
    assert_eq!(
        finish(spawn_wait(&store, &handle, HOUR))
            .await
            .expect("signalled"),
        RUNNABLE
    );

    // Keep the loaded instance locked until the end, so it does not become runnable again.
    let (_running, found) = try_load_runnable(&store, owner).await;
    assert_eq!(found, Some(id));
    assert_eq!(
        finish(spawn_wait(&store, &handle, HOUR))
            .await
            .expect("still signalled"),
        RUNNABLE
    );
    let (_idle, found) = try_load_runnable(&store, owner).await;
    assert_eq!(found, None, "nothing else is runnable");

    let wait = spawn_wait(&store, &handle, Duration::from_secs(10));
    settle().await;
    assert!(!wait.is_finished(), "the event was reset");
    env.clock.advance(Duration::from_secs(10));
    assert_eq!(finish(wait).await.expect("the wait times out"), Vec::new());
}

/// A wait with nothing runnable returns an empty list once its timeout passes on the clock.
pub async fn wait_for_events_returns_nothing_when_its_timeout_passes(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, _) = waiter(&store, CreateOwner::host_type("orders")).await;
    let wait = spawn_wait(&store, &handle, Duration::from_secs(10));
    settle().await; // the timeout counts from when the wait starts
    env.clock.advance(Duration::from_secs(9));
    settle().await;
    assert!(!wait.is_finished(), "the timeout has not passed");
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(finish(wait).await.expect("the wait succeeds"), Vec::new());
}

/// Freeing the handle ends its wait with no events.
pub async fn freeing_the_handle_ends_the_wait_with_no_events(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let other = Arc::new(store.create_handle_for(Some(owner), None));
    let wait = spawn_wait(&store, &other, HOUR);
    settle().await;
    assert!(!wait.is_finished());
    other.free();
    assert_eq!(finish(wait).await.expect("the wait ends"), Vec::new());
    assert!(
        !handle.is_freed(),
        "other handles of the owner are untouched"
    );
}

/// Only one wait runs on a handle at a time; a second concurrent one is `CommandOverlap`.
pub async fn a_second_wait_on_one_handle_is_command_overlap(env: &Env) {
    let store = env.store_with(push_only(env), Vec::new()).0;
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let first = spawn_wait(&store, &handle, HOUR);
    settle().await;
    let second = finish(spawn_wait(&store, &handle, HOUR)).await;
    assert_err!(second, StoreError::CommandOverlap);
    assert!(!first.is_finished(), "the first wait goes on");
    save_new(&store, owner, executing()).await;
    assert_eq!(
        finish(first).await.expect("the first wait succeeds"),
        RUNNABLE
    );
}

/// A wait of an owner that gets lost ends with `OwnerLost`, and so does any later wait.
pub async fn a_lost_owners_wait_ends_with_owner_lost(env: &Env) {
    let settings = StoreSettings {
        auto_recover_owner: false,
        ..push_only(env)
    };
    let (store, faults) = env.store_with(settings, Vec::new());
    let (handle, owner) = waiter(&store, CreateOwner::host_type("orders")).await;
    let wait = spawn_wait(&store, &handle, HOUR);
    faults.fail_renewals.store(true, SeqCst);
    env.clock.advance(Duration::from_secs(30));
    eventually("the renewal at 30 s is tried", || {
        faults.calls("renew_lease") > 0
    })
    .await;
    settle().await;
    assert!(!wait.is_finished(), "still alive at 30 s");
    env.clock.advance(Duration::from_secs(31));
    let result = finish(wait).await;
    assert_err!(result, StoreError::OwnerLost { owner: o } if o == owner);
    let again = finish(spawn_wait(&store, &handle, HOUR)).await;
    assert_err!(again, StoreError::OwnerLost { .. });
}

/// Lists this module's cases for [`crate::provider_tests!`] (unformatted: one line per case).
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! events_cases {
    ($make:path) => {
        $crate::__case!($make, events::wait_for_events_needs_an_owner_with_a_host_type);
        $crate::__case!($make, events::a_due_timer_wakes_a_waiting_owner_without_polling);
        $crate::__case!($make, events::a_later_timer_wakes_after_an_earlier_one_was_drained);
        $crate::__case!($make, events::unlocking_an_executing_instance_wakes_a_waiting_owner_without_polling);
        $crate::__case!($make, events::an_instance_released_through_another_store_wakes_a_waiting_owner_without_polling);
        $crate::__case!($make, events::a_dead_holders_lease_ending_makes_its_instances_runnable);
        $crate::__case!($make, events::the_fallback_poll_finds_instances_made_runnable_without_a_push);
        $crate::__case!($make, events::every_live_owner_of_the_host_type_is_signalled);
        $crate::__case!($make, events::the_event_stays_until_try_load_runnable_finds_nothing);
        $crate::__case!($make, events::wait_for_events_returns_nothing_when_its_timeout_passes);
        $crate::__case!($make, events::freeing_the_handle_ends_the_wait_with_no_events);
        $crate::__case!($make, events::a_second_wait_on_one_handle_is_command_overlap);
        $crate::__case!($make, events::a_lost_owners_wait_ends_with_owner_lost);
    };
}
