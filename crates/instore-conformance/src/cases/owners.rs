//! SPEC §4: owners and leases, renewal, loss and recovery, DeleteOwner, clean-up.
//!
//! | rule (SPEC §4) | cases |
//! |---|---|
//! | `CreateOwner` registers an owner with a new id, `lease_expires_at = now + lease`, the machine, host type and metadata; the view and handle are bound to it | `create_owner_registers_host_type_metadata_machine_and_lease` |
//! | `CreateOwner` on a handle already bound to an owner → `AlreadyBoundToOwner`; an empty host type or a lease under 1 s is invalid | `create_owner_on_a_handle_bound_to_an_owner_is_already_bound_to_owner`, `create_owner_rejects_an_empty_host_type_and_a_lease_under_a_second` |
//! | lease and renewal interval are configurable (the command may give its own lease) | `lease_and_renewal_interval_come_from_the_settings_or_the_command` |
//! | the store renews each live owner's lease in the background; one renewal keeps all its locks alive | `lease_renewal_keeps_an_owner_and_its_locks_alive_across_several_lease_periods` |
//! | renewal failing until the lease ends → the owner is lost: `OwnerLost` on later commands, a loss event, its instances free for others | `owner_whose_renewals_fail_past_its_lease_is_lost` |
//! | ▲ `auto_recover_owner` registers a fresh, usable owner (the default owner moves to it); lost handles stay invalid; off → no replacement | `lost_owner_is_replaced_by_a_fresh_usable_owner`, `without_auto_recovery_a_lost_owner_is_not_replaced` |
//! | `DeleteOwner` expires the lease now (instances takeable at once) and frees the handle | `delete_owner_makes_its_instances_takeable_at_once_and_frees_the_handle` |
//! | owners are never deleted while they hold locks; expired owners holding nothing are cleaned up | `expired_owners_holding_nothing_are_cleaned_up_but_lock_holders_are_kept`, `deleted_owner_holding_locks_stays_stored_until_its_locks_pass_on` |
//! | one store hosts several owners; a host uses several stores | `one_store_hosts_several_owners_at_once`, `one_host_uses_several_stores_at_once` |
//! | renewals follow the shortest lease of the store's owners | `an_owner_with_a_lease_shorter_than_the_renewal_interval_stays_alive` |
//!
//! The `HasRunnableWorkflow` binding of a `CreateOwner` handle with a host type is in `events`.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, Command, CreateOwner, InstanceId, InstanceStore, Load, MemoryProvider, OwnerId, OwnerInfo,
    PropertyBag, Save, StoreError, StoreEvent, StoreSettings, Timestamp,
};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::harness::{
    assert_err, create, data, eventually, eventually_async, load_as, lock_new, ok_on, settle, Env,
    Faults, T,
};

const LEASE: Duration = Duration::from_secs(60);
const RENEW_EVERY: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);

fn with_lease(lease: Duration) -> CreateOwner {
    CreateOwner {
        lease: Some(lease),
        ..CreateOwner::default()
    }
}

/// `CreateOwner` for an `orders` host with `metadata`.
fn orders_owner(metadata: PropertyBag) -> CreateOwner {
    CreateOwner {
        metadata,
        ..CreateOwner::host_type("orders")
    }
}

fn no_recovery(env: &Env) -> StoreSettings {
    StoreSettings {
        auto_recover_owner: false,
        ..env.settings()
    }
}

async fn stored(store: &InstanceStore) -> Vec<OwnerInfo> {
    let owners = store.provider().owners().await;
    owners.expect("owners can be listed")
}

async fn stored_owner(store: &InstanceStore, id: OwnerId) -> Option<OwnerInfo> {
    stored(store).await.into_iter().find(|o| o.id == id)
}

async fn stored_ids(store: &InstanceStore) -> Vec<OwnerId> {
    stored(store).await.into_iter().map(|o| o.id).collect()
}

async fn lease_end(store: &InstanceStore, id: OwnerId) -> Option<Timestamp> {
    stored_owner(store, id).await.map(|o| o.lease_expires_at)
}

async fn next_event(events: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    event.expect("an event arrives").expect("open channel")
}

/// Waits until the background renewal of `owner` has moved its stored lease to `now + lease`.
async fn renewed(env: &Env, store: &InstanceStore, owner: OwnerId, lease: Duration) {
    let want = Some(env.now().plus(lease));
    let renewed = || async move { lease_end(store, owner).await == want };
    eventually_async("the lease is renewed in the background", renewed).await;
}

/// Makes renewals fail, then moves time past the lease in two steps, each shorter than a lease:
/// with working renewals the owners would have survived.
async fn let_leases_lapse(env: &Env, faults: &Faults) {
    faults.fail_renewals.store(true, SeqCst);
    let tried = faults.calls("renew_lease");
    env.clock.advance(RENEW_EVERY);
    let renewal_tried = || faults.calls("renew_lease") > tried;
    eventually("the renewal at 30 s is tried", renewal_tried).await;
    env.clock.advance(LEASE - RENEW_EVERY + SECOND);
}

/// `CreateOwner` stores the owner with its host type, metadata, machine and lease, and binds the
/// handle and the view to it.
pub async fn create_owner_registers_host_type_metadata_machine_and_lease(env: &Env) {
    let store = env.store();
    let handle = store.create_handle();
    assert_eq!(handle.owner(), None, "no owner yet, so no default owner");
    let metadata = bag([("site", "eu-1")]);
    let command = orders_owner(metadata.clone());
    let view = ok_on(&store, &handle, command).await;
    let owner = view.owner.expect("the view is bound");
    assert_eq!(handle.owner(), Some(owner), "the handle is bound");

    let info = stored_owner(&store, owner).await.expect("stored");
    assert_eq!(info.host_type.as_deref(), Some("orders"));
    assert_eq!(info.metadata, metadata);
    assert_eq!(info.machine, store.machine());
    assert_eq!(info.lease_expires_at, env.now().plus(LEASE));
    assert_ne!(env.owner(&store, None).await, owner, "a new id");
}

/// A handle already bound to an owner (by `CreateOwner`, or by the store's default owner)
/// cannot create another one.
pub async fn create_owner_on_a_handle_bound_to_an_owner_is_already_bound_to_owner(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let handle = store.create_handle();
    let view = ok_on(&store, &handle, CreateOwner::default()).await;
    let owner = view.owner.expect("bound");

    let again = store.execute(&handle, CreateOwner::default(), T).await;
    assert_err!(again, StoreError::AlreadyBoundToOwner { owner: o } if o == owner);
    let default = store.create_handle();
    let again = store.execute(&default, CreateOwner::default(), T).await;
    assert_err!(again, StoreError::AlreadyBoundToOwner { owner: o } if o == owner);
    assert_eq!(faults.calls("create_owner"), 1, "refused before storage");
}

/// An empty host type and a lease under one second are validation errors naming the field.
pub async fn create_owner_rejects_an_empty_host_type_and_a_lease_under_a_second(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let empty = CreateOwner::host_type("  ");
    let result = store.execute(&store.create_handle(), empty, T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("host_type"));
    let short = with_lease(Duration::from_millis(500));
    let result = store.execute(&store.create_handle(), short, T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("lease"));
    assert_eq!(faults.calls("create_owner"), 0, "refused before storage");
}

/// The store's `lease` and `renew_every` settings apply; a `CreateOwner` lease overrides the
/// setting for that owner, renewals included.
pub async fn lease_and_renewal_interval_come_from_the_settings_or_the_command(env: &Env) {
    let (ten, twenty) = (Duration::from_secs(10), Duration::from_secs(20));
    let renew_every = Duration::from_secs(4);
    let settings = StoreSettings {
        lease: ten,
        renew_every,
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let by_setting = env.owner(&store, None).await;
    let by_command = env.owner_with(&store, with_lease(twenty)).await;
    let (now, end) = (env.now(), |owner| lease_end(&store, owner));
    assert_eq!(end(by_setting).await, Some(now.plus(ten)));
    assert_eq!(end(by_command).await, Some(now.plus(twenty)));

    env.clock.advance(renew_every);
    renewed(env, &store, by_setting, ten).await;
    renewed(env, &store, by_command, twenty).await;
}

/// Background renewal keeps an owner and the lock it holds alive over three lease periods.
pub async fn lease_renewal_keeps_an_owner_and_its_locks_alive_across_several_lease_periods(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let (handle, id) = lock_new(&store, owner).await;
    for _ in 0..6 {
        env.clock.advance(RENEW_EVERY);
        renewed(env, &store, owner, LEASE).await;
    }
    // 180 s later: still alive, still holding the lock.
    let view = ok_on(&store, &handle, Save::data(data(2))).await;
    assert_eq!(view.lock_version, Some(1));
    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let taken = load_as(&other_store, other, id).await;
    assert_err!(taken, StoreError::InstanceLocked { owner: o, .. } if o == owner);
}

/// An owner whose renewals fail until its lease ends is lost: the store reports it, every later
/// command of its handles answers `OwnerLost`, and another owner can take its instances.
pub async fn owner_whose_renewals_fail_past_its_lease_is_lost(env: &Env) {
    let (store, faults) = env.store_with(no_recovery(env), Vec::new());
    let mut events = store.subscribe();
    let owner = env.owner(&store, Some("orders")).await;
    let (handle, id) = lock_new(&store, owner).await;

    let_leases_lapse(env, &faults).await;
    let lost = StoreEvent::OwnerLost { owner };
    assert_eq!(next_event(&mut events).await, lost);

    let save = store.execute(&handle, Save::data(data(2)), T).await;
    assert_err!(save, StoreError::OwnerLost { owner: o } if o == owner);
    let fresh = load_as(&store, owner, InstanceId::new()).await;
    assert_err!(fresh, StoreError::OwnerLost { owner: o } if o == owner);

    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_as(&other_store, other, id).await;
    let view = view.expect("the instance is free");
    assert_eq!(view.lock_version, Some(2));
    assert_eq!(view.data, data(1), "the lost owner's save changed nothing");
}

/// With `auto_recover_owner` (the default) a lost owner is replaced by a fresh owner with the
/// same host type and metadata, which becomes the default owner and runs commands; handles of
/// the lost owner stay invalid.
pub async fn lost_owner_is_replaced_by_a_fresh_usable_owner(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let mut events = store.subscribe();
    let metadata = bag([("site", "eu-1")]);
    let command = orders_owner(metadata.clone());
    let lost = env.owner_with(&store, command).await;
    assert_eq!(store.default_owner(), Some(lost));
    let (handle, id) = lock_new(&store, lost).await;

    let_leases_lapse(env, &faults).await;
    let event = next_event(&mut events).await;
    assert_eq!(event, StoreEvent::OwnerLost { owner: lost });
    let replacement = match next_event(&mut events).await {
        StoreEvent::OwnerRecovered {
            lost: l,
            replacement: r,
        } if l == lost => r,
        other => panic!("expected OwnerRecovered for {lost:?}, got {other:?}"),
    };
    faults.fail_renewals.store(false, SeqCst);
    assert_ne!(replacement, lost);
    assert_eq!(store.default_owner(), Some(replacement), "the new default");
    let info = stored_owner(&store, replacement).await.expect("stored");
    assert_eq!(info.host_type.as_deref(), Some("orders"));
    assert_eq!(info.metadata, metadata);
    assert!(info.lease_expires_at > env.now(), "its lease is alive");

    assert_eq!(store.create_handle().owner(), Some(replacement));
    let fresh = env.handle(&store, replacement, Some(id));
    let view = ok_on(&store, &fresh, create()).await;
    assert_eq!(view.lock_version, Some(2), "passed to another owner");
    assert_eq!(view.data, data(1));
    ok_on(&store, &fresh, Save::data(data(3)).and_unlock()).await;

    let stale = store.execute(&handle, Save::data(data(2)), T).await;
    assert_err!(stale, StoreError::OwnerLost { owner: o } if o == lost);
    let by_lost = load_as(&store, lost, InstanceId::new()).await;
    assert_err!(by_lost, StoreError::OwnerLost { .. });
}

/// With `auto_recover_owner` off, a lost owner is reported but nothing replaces it.
pub async fn without_auto_recovery_a_lost_owner_is_not_replaced(env: &Env) {
    let (store, faults) = env.store_with(no_recovery(env), Vec::new());
    let mut events = store.subscribe();
    let lost = env.owner(&store, Some("orders")).await;

    let_leases_lapse(env, &faults).await;
    let event = next_event(&mut events).await;
    assert_eq!(event, StoreEvent::OwnerLost { owner: lost });
    faults.fail_renewals.store(false, SeqCst);
    // A recovery would start at once and retry every second: give it every chance.
    settle().await;
    env.clock.advance(Duration::from_secs(2));
    settle().await;
    assert_err!(events.try_recv(), TryRecvError::Empty);
    assert_eq!(faults.calls("create_owner"), 1, "no replacement registered");
    assert!(stored_ids(&store).await.iter().all(|o| *o == lost));
    // New handles are no longer bound to the lost owner: there is no default owner now.
    assert_eq!(store.default_owner(), None);
    let handle = store.create_handle();
    assert_eq!(handle.owner(), None);
    let query = store.execute(&handle, Command::QueryActivatable, T).await;
    assert!(query.is_err(), "no live default owner: {query:?}");
}

/// `DeleteOwner` ends the lease now: another owner takes its instances without waiting, the
/// handle is freed, its other handles stop working, and a deliberate deletion is not reported as
/// a loss.
pub async fn delete_owner_makes_its_instances_takeable_at_once_and_frees_the_handle(env: &Env) {
    let store = env.store();
    let mut events = store.subscribe();
    let owner = env.owner(&store, Some("orders")).await;
    let (handle, id) = lock_new(&store, owner).await;

    let deleting = env.handle(&store, owner, None);
    ok_on(&store, &deleting, Command::DeleteOwner).await;
    assert!(deleting.is_freed(), "DeleteOwner frees the handle");

    // No clock movement: the instance is takeable at once.
    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_as(&other_store, other, id).await;
    let view = view.expect("takeable at once");
    assert_eq!(view.lock_version, Some(2));
    assert_eq!(view.data, data(1));

    let stale = store.execute(&handle, Save::data(data(2)), T).await;
    assert_err!(
        stale,
        StoreError::OwnerLost { .. } | StoreError::LockLost { .. }
    );
    settle().await;
    assert_err!(events.try_recv(), TryRecvError::Empty); // a deletion is no loss
}

/// Once their leases end, owners that hold nothing are cleaned up (when an owner is created or
/// deleted), while an owner still holding a lock is kept until its lock passes on.
pub async fn expired_owners_holding_nothing_are_cleaned_up_but_lock_holders_are_kept(env: &Env) {
    let crashed = env.store_with(no_recovery(env), Vec::new()).0;
    let holder = env.owner(&crashed, None).await;
    let idle = env.owner(&crashed, None).await;
    let (_handle, id) = lock_new(&crashed, holder).await;
    // The host crashes: nothing of it runs any more. (Left running, its renewal would find the
    // leases ended and end them in storage while the clean-ups below run; a clean-up skips the
    // owner rows such a transaction holds (SKIP LOCKED), so which owners it removed would depend
    // on timing.)
    crashed.shutdown().await;
    env.clock.advance(LEASE + SECOND); // both leases end

    let store = env.store();
    let live = env.owner(&store, None).await; // registering an owner cleans up
    let spare = env.owner(&store, None).await;
    let owners = stored_ids(&store).await;
    assert!(owners.contains(&holder), "a lock holder is kept");
    assert!(!owners.contains(&idle), "an idle expired owner is removed");

    let view = load_as(&store, live, id).await.expect("takeable");
    assert_eq!(view.lock_version, Some(2));
    // Deleting an owner cleans up too: the old holder holds nothing now, nor did `spare`.
    ok_on(
        &store,
        &env.handle(&store, spare, None),
        Command::DeleteOwner,
    )
    .await;
    assert_eq!(stored_ids(&store).await, vec![live]);
}

/// An owner deleted while it holds locks stays stored (with its lease ended) until another owner
/// has taken them; then it is cleaned up.
pub async fn deleted_owner_holding_locks_stays_stored_until_its_locks_pass_on(env: &Env) {
    let store = env.store();
    let deleted = env.owner(&store, None).await;
    let (_handle, id) = lock_new(&store, deleted).await;
    let deleting = env.handle(&store, deleted, None);
    ok_on(&store, &deleting, Command::DeleteOwner).await;
    let info = stored_owner(&store, deleted).await;
    let info = info.expect("a lock holder is not deleted");
    assert!(info.lease_expires_at <= env.now(), "its lease ended now");

    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    assert!(
        stored_owner(&store, deleted).await.is_some(),
        "still a holder"
    );
    load_as(&other_store, other, id).await.expect("takeable");
    env.owner(&other_store, None).await;
    let gone = stored_owner(&store, deleted).await.is_none();
    assert!(gone, "cleaned up once it holds nothing");
}

/// One store hosts several owners at once: each holds its own locks (they contend like any two
/// owners), the first is the default, and the store keeps all their leases alive.
pub async fn one_store_hosts_several_owners_at_once(env: &Env) {
    let store = env.store();
    let orders = env.owner(&store, Some("orders")).await;
    let billing = env.owner(&store, Some("billing")).await;
    assert_eq!(store.default_owner(), Some(orders), "the first is default");
    assert_eq!(store.create_handle().owner(), Some(orders));

    let (order, order_id) = lock_new(&store, orders).await;
    let (bill, _) = lock_new(&store, billing).await;
    let contended = load_as(&store, billing, order_id).await;
    assert_err!(contended, StoreError::InstanceLocked { owner: o, .. } if o == orders);

    for _ in 0..4 {
        env.clock.advance(RENEW_EVERY);
        renewed(env, &store, orders, LEASE).await;
        renewed(env, &store, billing, LEASE).await;
    }
    ok_on(&store, &order, Save::data(data(2)).and_unlock()).await;
    ok_on(&store, &bill, Save::data(data(2)).and_unlock()).await;
}

/// One host uses several stores at once, each with its own owners and instances: the same
/// instance id names different instances in each, and handles belong to their store.
pub async fn one_host_uses_several_stores_at_once(env: &Env) {
    let main = env.store();
    let provider = MemoryProvider::with_clock(Arc::new(env.clock.clone()));
    let side = InstanceStore::builder(provider).build();
    let side = side.expect("default settings are valid");
    let a = env.owner(&main, Some("orders")).await;
    let b = env.owner(&side, Some("orders")).await;
    assert!(
        !stored_ids(&main).await.contains(&b),
        "owners are per store"
    );

    let id = InstanceId::new();
    let in_main = env.handle(&main, a, Some(id));
    ok_on(&main, &in_main, create()).await;
    ok_on(&main, &in_main, Save::data(bag([("store", "main")]))).await;
    let in_side = env.handle(&side, b, Some(id));
    let view = ok_on(&side, &in_side, create()).await;
    assert_eq!(view.lock_version, Some(1), "not locked in the side store");
    ok_on(&side, &in_side, Save::data(bag([("store", "side")]))).await;

    let view = ok_on(&main, &in_main, Load::default()).await;
    assert_eq!(view.data, bag([("store", "main")]));
    let view = ok_on(&side, &in_side, Load::default()).await;
    assert_eq!(view.data, bag([("store", "side")]));
    let foreign = env.handle(&side, b, Some(InstanceId::new()));
    let result = main.execute(&foreign, create(), T).await;
    assert_err!(result, StoreError::Invalid { .. });
}

/// SPEC §4: an owner created with a lease shorter than the store's renewal interval is still
/// renewed in time (renewals follow the shortest lease), so it is never lost while healthy.
pub async fn an_owner_with_a_lease_shorter_than_the_renewal_interval_stays_alive(env: &Env) {
    let store = env.store(); // renews every 30 s
    let short = CreateOwner {
        lease: Some(Duration::from_secs(5)),
        ..CreateOwner::host_type("orders")
    };
    let owner = env.owner_with(&store, short).await;
    for _ in 0..12 {
        env.clock.advance(Duration::from_secs(1));
        settle().await;
    }
    let result = load_as(&store, owner, InstanceId::new()).await;
    assert!(result.is_ok(), "the owner was lost: {result:?}");
}

/// Lists this module's cases for [`crate::provider_tests!`] (unformatted: one line per case).
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! owners_cases {
    ($make:path) => {
        $crate::__case!($make, owners::an_owner_with_a_lease_shorter_than_the_renewal_interval_stays_alive);
        $crate::__case!($make, owners::create_owner_registers_host_type_metadata_machine_and_lease);
        $crate::__case!($make, owners::create_owner_on_a_handle_bound_to_an_owner_is_already_bound_to_owner);
        $crate::__case!($make, owners::create_owner_rejects_an_empty_host_type_and_a_lease_under_a_second);
        $crate::__case!($make, owners::lease_and_renewal_interval_come_from_the_settings_or_the_command);
        $crate::__case!($make, owners::lease_renewal_keeps_an_owner_and_its_locks_alive_across_several_lease_periods);
        $crate::__case!($make, owners::owner_whose_renewals_fail_past_its_lease_is_lost);
        $crate::__case!($make, owners::lost_owner_is_replaced_by_a_fresh_usable_owner);
        $crate::__case!($make, owners::without_auto_recovery_a_lost_owner_is_not_replaced);
        $crate::__case!($make, owners::delete_owner_makes_its_instances_takeable_at_once_and_frees_the_handle);
        $crate::__case!($make, owners::expired_owners_holding_nothing_are_cleaned_up_but_lock_holders_are_kept);
        $crate::__case!($make, owners::deleted_owner_holding_locks_stays_stored_until_its_locks_pass_on);
        $crate::__case!($make, owners::one_store_hosts_several_owners_at_once);
        $crate::__case!($make, owners::one_host_uses_several_stores_at_once);
    };
}
