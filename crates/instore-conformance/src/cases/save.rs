//! SPEC §6.4: Save and its effects, completion.
//!
//! | rule (SPEC §6.4) | cases |
//! |---|---|
//! | Save needs an owner and an instance | `save_needs_an_owner_and_an_instance` |
//! | a save without a lock acquires it, creating the instance if needed; another live holder → `InstanceLocked` | `a_save_without_a_lock_acquires_it_creating_the_instance` |
//! | `complete` requires `unlock` (validation error, nothing changes) | `complete_without_unlock_is_rejected` |
//! | data (if given) replaces the data whole and makes the instance `Initialized` | `data_is_replaced_whole_by_each_save_with_data`, `the_first_save_with_data_initializes_the_instance` |
//! | metadata changes apply (with or without data) | `values::change_bags_delete_metadata_and_apply_in_order`, `a_save_without_data_leaves_data_timer_status_and_bookmarks` |
//! | keys associated → completed → freed; key errors | `keys::*` |
//! | projected fields `timer`, `status`, `bookmarks` are written with data | `a_save_with_data_writes_timer_status_and_bookmarks` |
//! | a save without data leaves data, timer, status and bookmarks untouched | `a_save_without_data_leaves_data_timer_status_and_bookmarks` |
//! | `suspend` is written (with or without data) | `suspension::*` |
//! | `unlock`: the lock is released and the handle freed | `unlock_releases_the_lock_and_frees_the_handle` |
//! | `complete` marks the instance Completed, completes its keys; `InstanceComplete` afterwards (Keep) | `complete_marks_the_instance_completed_and_completes_its_keys`, `keys::completing_an_instance_completes_its_keys` |
//! | completion action `DeleteAll` deletes every row of the instance | `completing_with_delete_all_removes_the_instance_and_its_keys` |
//! | an unlocked `Executing` or timed instance enters the runnable set | `runnable::*` |
//! | a failing save changes nothing (atomic) | `a_failing_save_changes_nothing`, `values::payload_too_large_changes_nothing`, `keys::a_failing_key_change_changes_nothing` |
//! | atomic: a save on an undecodable row fails as corrupt and changes nothing | `a_save_on_an_undecodable_instance_changes_nothing` |

use std::time::Duration;

use instore::{
    bag, Command, CompletionAction, ExecutionStatus, InstanceId, InstanceState, KeyId, KeyState,
    Load, LoadByKey, Save, StoreError, StoreSettings, SuspendChange,
};

use crate::harness::*;

/// SPEC §6.4: Save needs an owner and an instance on the handle.
pub async fn save_needs_an_owner_and_an_instance(env: &Env) {
    let store = env.store();
    let save = || Save::data(bag([("a", 1i64)]));
    let unowned = store.create_handle_for(None, Some(InstanceId::new()));
    assert_err!(
        store.execute(&unowned, save(), T).await,
        StoreError::Invalid { .. }
    );
    let owner = env.owner(&store, None).await;
    assert_err!(
        run(&store, owner, None, save()).await,
        StoreError::Invalid { .. }
    );
}

/// SPEC §6.4: a save on a handle without a lock acquires it — creating the instance, or taking
/// an unlocked one (a new epoch for a new owner) — and fails with `InstanceLocked` while another
/// live owner holds it.
pub async fn a_save_without_a_lock_acquires_it_creating_the_instance(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let view = store
        .execute(&h, Save::data(bag([("a", 1i64)])), T)
        .await
        .expect("create");
    let created = (view.instance, view.state, view.lock_version);
    assert_eq!(created, (Some(id), InstanceState::Initialized, Some(1)));
    assert_eq!(h.lock_version(), Some(1));

    let (other, writer) = other_host(env, None).await;
    let result = run(&other, writer, Some(id), Save::data(bag([("a", 2i64)]))).await;
    assert_err!(result, StoreError::InstanceLocked { instance, owner: o, .. } if instance == id && o == owner);

    store
        .execute(&h, Save::default().and_unlock(), T)
        .await
        .expect("unlock");
    let h2 = env.handle(&other, writer, Some(id));
    let view = other
        .execute(&h2, Save::data(bag([("a", 3i64)])), T)
        .await
        .expect("take it");
    assert_eq!((view.lock_version, h2.lock_version()), (Some(2), Some(2)));
    assert_eq!(view.data, bag([("a", 3i64)]));
}

/// SPEC §6.4: `complete` without `unlock` is a validation error and changes nothing, on a
/// lock-bound handle and on a fresh one.
pub async fn complete_without_unlock_is_rejected(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    store
        .execute(&h, Save::data(bag([("a", 1i64)])), T)
        .await
        .expect("save");
    let mut bad = Save::data(bag([("a", 2i64)]));
    bad.complete = true;
    assert_err!(
        store.execute(&h, bad.clone(), T).await,
        StoreError::Invalid { .. }
    );
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("still held");
    assert_eq!(
        (view.state, h.lock_version()),
        (InstanceState::Initialized, Some(1))
    );
    assert_eq!(view.data, bag([("a", 1i64)]));

    let fresh = InstanceId::new();
    assert_err!(
        run(&store, owner, Some(fresh), bad).await,
        StoreError::Invalid { .. }
    );
    let result = run(&store, owner, Some(fresh), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { .. });
}

/// SPEC §3/§6.4: each save with data replaces the whole data (names not resent are gone).
pub async fn data_is_replaced_whole_by_each_save_with_data(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    store
        .execute(&h, Save::data(bag([("a", 1i64), ("b", 2)])), T)
        .await
        .expect("save");
    let view = store
        .execute(&h, Save::data(bag([("c", 3i64)])), T)
        .await
        .expect("replace");
    assert_eq!(view.data, bag([("c", 3i64)]));
    let empty = Save::data(bag::<_, &str, i64>([])).and_unlock();
    let view = store.execute(&h, empty, T).await.expect("empty data");
    assert!(view.data.is_empty());
    let view = ok(&store, owner, Some(id), Load::default()).await;
    assert!(view.data.is_empty(), "{view:?}");
    assert_eq!(
        view.state,
        InstanceState::Initialized,
        "empty data is still data"
    );
}

/// SPEC §6.4: a save with data initializes an uninitialized instance; one without does not.
pub async fn the_first_save_with_data_initializes_the_instance(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let h = env.handle(&store, owner, Some(InstanceId::new()));
    let accept = Load {
        accept_uninitialized: true,
        ..Load::default()
    };
    let view = store.execute(&h, accept, T).await.expect("create");
    assert_eq!(view.state, InstanceState::Uninitialized);
    let meta = Save {
        metadata_changes: vec![set("m", 1)],
        ..Save::default()
    };
    let view = store.execute(&h, meta, T).await.expect("metadata only");
    assert_eq!(view.state, InstanceState::Uninitialized);
    let view = store
        .execute(&h, Save::data(bag([("a", 1i64)])), T)
        .await
        .expect("data");
    assert_eq!(view.state, InstanceState::Initialized);
    assert_eq!(view.metadata, bag([("m", 1i64)]));
}

/// SPEC §6.4: timer, status and bookmarks are written by saves with data (each status value
/// round-trips; bookmarks are replaced as a list).
pub async fn a_save_with_data_writes_timer_status_and_bookmarks(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let statuses = [
        ExecutionStatus::Executing,
        ExecutionStatus::Idle,
        ExecutionStatus::Closed,
        ExecutionStatus::Faulted,
        ExecutionStatus::Canceled,
        ExecutionStatus::Terminated,
    ];
    for (i, status) in statuses.into_iter().enumerate() {
        // Distinct to the microsecond, the precision timestamps keep.
        let timer = env
            .now()
            .plus(Duration::from_secs(3600) + Duration::from_micros(i as u64));
        let bookmarks = vec![format!("b{i}"), "common".to_owned()];
        let mut save = Save::data(bag([("i", i as i64)]))
            .with_timer(timer)
            .with_status(status);
        save.bookmarks = bookmarks.clone();
        let view = store.execute(&h, save, T).await.expect("save");
        assert_eq!((view.status, view.timer), (Some(status), Some(timer)));
        let view = store
            .execute(&h, Load::default(), T)
            .await
            .expect("re-read");
        assert_eq!((view.status, view.timer), (Some(status), Some(timer)));
        assert_eq!(view.bookmarks, bookmarks);
    }
    let save = Save::data(bag([("done", true)])).and_unlock();
    let view = store.execute(&h, save, T).await.expect("clear");
    let cleared = (None, Some(ExecutionStatus::Idle), 0);
    assert_eq!((view.timer, view.status, view.bookmarks.len()), cleared);
    let (other, reader) = other_host(env, None).await;
    let view = ok(&other, reader, Some(id), Load::default()).await;
    assert_eq!((view.timer, view.status, view.bookmarks.len()), cleared);
}

/// SPEC §6.4: a save without data (a metadata-only save) leaves data, timer, status and
/// bookmarks as they were, whatever those fields of the command say, and applies its metadata.
pub async fn a_save_without_data_leaves_data_timer_status_and_bookmarks(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let timer = env.now().plus(Duration::from_secs(3600));
    let faulted = ExecutionStatus::Faulted;
    let mut first = Save::data(bag([("a", 1i64)]))
        .with_timer(timer)
        .with_status(faulted);
    first.bookmarks = vec!["approve".into()];
    store.execute(&h, first, T).await.expect("save");
    // Every projected field says something else: none of it may be written without data.
    let mut meta_only = Save::default()
        .with_status(ExecutionStatus::Closed)
        .and_unlock();
    meta_only.metadata_changes = vec![set("m", 1)];
    let view = store
        .execute(&h, meta_only, T)
        .await
        .expect("metadata-only save");
    let (other, reader) = other_host(env, None).await;
    let reloaded = ok(&other, reader, Some(id), Load::default()).await;
    for v in [view, reloaded] {
        assert_eq!(
            (v.data, v.metadata),
            (bag([("a", 1i64)]), bag([("m", 1i64)]))
        );
        assert_eq!((v.timer, v.status), (Some(timer), Some(faulted)));
        assert_eq!(v.bookmarks, vec!["approve".to_owned()]);
    }
}

/// SPEC §6.4: `unlock` releases the lock (another owner takes it at once) and frees the handle.
pub async fn unlock_releases_the_lock_and_frees_the_handle(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let save = Save::data(bag([("a", 1i64)])).and_unlock();
    let view = store.execute(&h, save, T).await.expect("save and unlock");
    assert_eq!(view.lock_version, None, "the view is not lock-bound");
    assert!(h.is_freed(), "the handle is freed");
    let again = store.execute(&h, Load::default(), T).await;
    assert!(
        again.is_err(),
        "a freed handle runs no more commands: {again:?}"
    );
    let (other, reader) = other_host(env, None).await;
    let view = run(&other, reader, Some(id), Load::default()).await;
    assert_eq!(view.expect("free to take at once").lock_version, Some(2));
}

/// SPEC §6.4 (completion action `Keep`): `complete` marks the instance Completed, completes its
/// keys, releases the lock; loads and saves then answer `InstanceComplete`.
pub async fn complete_marks_the_instance_completed_and_completes_its_keys(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let h = env.handle(&store, owner, None);
    let view = store
        .execute(&h, LoadByKey::or_create(key), T)
        .await
        .expect("create");
    let id = view.instance.expect("bound");
    let save = Save::data(bag([("result", "ok")])).and_complete();
    let view = store.execute(&h, save, T).await.expect("complete");
    assert_eq!(
        (view.state, view.lock_version),
        (InstanceState::Completed, None)
    );
    assert_eq!(view.keys[&key].state, KeyState::Completed);
    assert!(h.is_freed());
    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceComplete { instance } if instance == id);
    let result = run(&other, reader, Some(id), Save::data(bag([("a", 1i64)]))).await;
    assert_err!(result, StoreError::InstanceComplete { instance } if instance == id);
}

/// SPEC §6.4 (completion action `DeleteAll`): completing deletes the instance and its keys; the
/// id then names nothing.
pub async fn completing_with_delete_all_removes_the_instance_and_its_keys(env: &Env) {
    let settings = StoreSettings {
        completion: CompletionAction::DeleteAll,
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let h = env.handle(&store, owner, None);
    let view = store
        .execute(&h, LoadByKey::or_create(key), T)
        .await
        .expect("create");
    let id = view.instance.expect("bound");
    let mut save = Save::data(bag([("a", 1i64)])).and_complete();
    save.metadata_changes = vec![set("m", 1)];
    let view = store.execute(&h, save, T).await.expect("complete");
    assert_eq!(view.state, InstanceState::Completed);

    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
    let result = run(&other, reader, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
    let accept = Load {
        accept_uninitialized: true,
        ..Load::default()
    };
    let view = run(&other, reader, Some(id), accept)
        .await
        .expect("the id is free again");
    assert_eq!(view.state, InstanceState::Uninitialized);
    let empty = view.data.is_empty() && view.metadata.is_empty() && view.keys.is_empty();
    assert!(empty, "nothing is left: {view:?}");
}

/// SPEC §6: a save that fails (here on a key collision) applies none of its effects — data,
/// metadata, projected fields, suspension, unlock — and the handle keeps its lock.
pub async fn a_failing_save_changes_nothing(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let taken = KeyId::new();
    let hx = env.handle(&store, owner, Some(InstanceId::new()));
    let mut save = Save::data(bag([("x", 1i64)]));
    save.keys_to_associate = vec![taken.into()];
    store
        .execute(&hx, save, T)
        .await
        .expect("another instance holds the key");

    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let before = store
        .execute(&h, Save::data(bag([("a", 1i64)])), T)
        .await
        .expect("save");
    let mut failing = Save::data(bag([("a", 2i64)]))
        .with_status(ExecutionStatus::Executing)
        .with_timer(env.now())
        .and_unlock();
    failing.metadata_changes = vec![set("m", 1)];
    failing.keys_to_associate = vec![KeyId::new().into(), taken.into()];
    failing.bookmarks = vec!["b".into()];
    failing.suspend = SuspendChange::Suspend {
        reason: "r".into(),
        exception: None,
    };
    let result = store.execute(&h, failing, T).await;
    assert_err!(result, StoreError::InstanceKeyCollision { key, .. } if key == taken);
    assert_eq!(
        (h.lock_version(), h.is_freed()),
        (before.lock_version, false)
    );
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("still held");
    assert_eq!(
        (view.data, view.metadata.len(), view.keys.len()),
        (bag([("a", 1i64)]), 0, 0)
    );
    assert_eq!(
        (view.status, view.timer, view.bookmarks.len()),
        (before.status, None, 0)
    );
    assert_eq!(view.suspension, None);
    let (other, runner) = other_host(env, Some("orders")).await;
    let view = run(&other, runner, None, Command::TryLoadRunnable)
        .await
        .expect("try");
    assert_eq!(
        view.instance, None,
        "the failed save did not unlock it into the runnable set"
    );
}

/// SPEC §6 atomicity: a save on an instance whose stored data no longer decodes fails as a
/// corrupt row and changes nothing — no key associated, no lock kept.
pub async fn a_save_on_an_undecodable_instance_changes_nothing(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    ok(&store, owner, Some(id), Save::data(data(1)).and_unlock()).await;
    env.provider.corrupt_instance_data(id).await;
    let key = KeyId::new();
    let metadata_only = Save {
        keys_to_associate: vec![key.into()],
        ..Save::default()
    };
    let failed = run(&store, owner, Some(id), metadata_only).await;
    assert!(
        matches!(failed, Err(StoreError::Storage(ref e)) if !e.is_transient()),
        "{failed:?}"
    );
    let (other_store, b) = other_host(env, None).await;
    let probe = Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(9))
    };
    let key_is_free = run(&other_store, b, Some(InstanceId::new()), probe).await;
    assert!(
        key_is_free.is_ok(),
        "the failed save associated its key: {key_is_free:?}"
    );
    let reload = run(&other_store, b, Some(id), Load::default()).await;
    assert!(
        !matches!(reload, Err(StoreError::InstanceLocked { .. })),
        "the failed save kept the lock: {reload:?}"
    );
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! save_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            save::a_save_on_an_undecodable_instance_changes_nothing
        );
        $crate::__case!($make, save::save_needs_an_owner_and_an_instance);
        $crate::__case!(
            $make,
            save::a_save_without_a_lock_acquires_it_creating_the_instance
        );
        $crate::__case!($make, save::complete_without_unlock_is_rejected);
        $crate::__case!($make, save::data_is_replaced_whole_by_each_save_with_data);
        $crate::__case!(
            $make,
            save::the_first_save_with_data_initializes_the_instance
        );
        $crate::__case!(
            $make,
            save::a_save_with_data_writes_timer_status_and_bookmarks
        );
        $crate::__case!(
            $make,
            save::a_save_without_data_leaves_data_timer_status_and_bookmarks
        );
        $crate::__case!($make, save::unlock_releases_the_lock_and_frees_the_handle);
        $crate::__case!(
            $make,
            save::complete_marks_the_instance_completed_and_completes_its_keys
        );
        $crate::__case!(
            $make,
            save::completing_with_delete_all_removes_the_instance_and_its_keys
        );
        $crate::__case!($make, save::a_failing_save_changes_nothing);
    };
}
