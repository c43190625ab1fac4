//! SPEC §6.2–6.3: Load and LoadByKey.
//!
//! | rule | cases |
//! |---|---|
//! | §6.2 Load needs an owner and an instance id on the handle | `load_needs_an_owner_and_an_instance_id` |
//! | §6.2 missing instance + `accept_uninitialized` → created `Uninitialized`, locked, version 1 | `load_accepting_uninitialized_creates_a_locked_uninitialized_instance` |
//! | §6.2 missing instance without it → `InstanceNotReady` | `load_of_a_missing_instance_is_not_ready` |
//! | §6.2 uninitialized and not accepted → `InstanceNotReady` | `an_uninitialized_instance_loads_only_when_accepted` |
//! | §6.2 completed → `InstanceComplete` | `load_of_a_completed_instance_is_instance_complete` |
//! | §6.2 success: lock-bound view with state, data, metadata, keys, `lock_version` | `load_returns_state_data_metadata_keys_and_lock_version` |
//! | §6.2 loading removes the instance from the runnable set | `loading_removes_the_instance_from_the_runnable_set` |
//! | §6.3 owner needed, no instance on the handle (`AlreadyBoundToInstance`), key not nil | `load_by_key_needs_an_owner_an_unbound_handle_and_a_non_nil_key` |
//! | §6.3 lookup key not in `keys_to_associate` without `create_with_id`; `create_with_id` needs `accept_uninitialized` | `load_by_key_argument_rules_are_checked_before_anything_changes` |
//! | §6.3 unknown key + `accept_uninitialized` → new locked instance with the key and `keys_to_associate` | `load_by_key_creates_an_instance_for_an_unknown_key`, `load_by_key_creates_the_instance_with_the_given_id` |
//! | §6.3 unknown key without it → `InstanceKeyNotReady` | `load_by_key_of_an_unknown_key_is_key_not_ready` |
//! | §6.3 key completed → `InstanceKeyComplete` | `keys::completed_key_answers_key_complete_until_freed` |
//! | §6.3 creating a key for an initialized instance → `InstanceCollision` | `creating_a_key_for_an_initialized_instance_is_an_instance_collision`, `a_key_can_be_created_for_an_uninitialized_instance` |
//! | §6.3 a key of another instance in `keys_to_associate` → `InstanceKeyCollision`, nothing changes | `a_key_of_another_instance_in_keys_to_associate_is_a_key_collision` |
//! | §6.3 racing creators of one new key end with exactly one instance | `concurrent_creators_of_one_new_key_end_with_one_instance` |
//! | §6.3 otherwise as Load, bound to the found instance | `load_by_key_loads_the_instance_its_key_names`, `load_by_key_of_an_uninitialized_instance_needs_accept_uninitialized` |

use instore::{
    bag, Command, ExecutionStatus, InstanceId, InstanceState, InstanceStore, KeyId, KeyState, Load,
    LoadByKey, MetadataChange, NewKey, OwnerId, Save, StoreError,
};

use crate::harness::*;

/// The LoadByKey cases (§6.3).
mod by_key;
pub use by_key::*;

const ACCEPT: Load = Load {
    accept_uninitialized: true,
    allow_suspended: false,
};

/// Creates an instance through `key` and saves `save` on it; returns the instance.
async fn by_key(store: &InstanceStore, owner: OwnerId, key: LoadByKey, save: Save) -> InstanceId {
    let h = store.create_handle_for(Some(owner), None);
    let view = store.execute(&h, key, T).await.expect("create by key");
    store.execute(&h, save, T).await.expect("save");
    view.instance.expect("a load by key binds the instance")
}

/// Creates an uninitialized, unlocked instance (a metadata-only save leaves it uninitialized).
async fn uninitialized_instance(store: &InstanceStore, owner: OwnerId) -> InstanceId {
    let h = store.create_handle_for(Some(owner), Some(InstanceId::new()));
    store.execute(&h, ACCEPT, T).await.expect("create");
    let view = store
        .execute(&h, Save::default().and_unlock(), T)
        .await
        .expect("unlock");
    assert_eq!(
        view.state,
        InstanceState::Uninitialized,
        "a save without data does not initialize"
    );
    view.instance.expect("bound")
}

/// SPEC §6.2: Load needs an owner and an instance id.
pub async fn load_needs_an_owner_and_an_instance_id(env: &Env) {
    let store = env.store();
    let id = InstanceId::new();
    let result = store
        .execute(&store.create_handle_for(None, Some(id)), ACCEPT, T)
        .await;
    assert_err!(result, StoreError::Invalid { .. });
    let owner = env.owner(&store, None).await;
    assert_err!(
        run(&store, owner, None, ACCEPT).await,
        StoreError::Invalid { .. }
    );
    let result = run(&store, owner, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
}

/// SPEC §6.2: a missing instance with `accept_uninitialized` is created uninitialized, locked
/// by the caller, at version 1.
pub async fn load_accepting_uninitialized_creates_a_locked_uninitialized_instance(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let view = store.execute(&h, ACCEPT, T).await.expect("create");
    let created = (view.instance, view.state, view.lock_version);
    assert_eq!(created, (Some(id), InstanceState::Uninitialized, Some(1)));
    assert!(
        view.data.is_empty() && view.metadata.is_empty() && view.keys.is_empty(),
        "{view:?}"
    );
    assert_eq!(h.lock_version(), Some(1), "the handle is lock-bound");

    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), ACCEPT).await;
    assert_err!(result, StoreError::InstanceLocked { instance, owner: o, .. } if instance == id && o == owner);
}

/// SPEC §6.2: a missing instance without `accept_uninitialized` is `InstanceNotReady`.
pub async fn load_of_a_missing_instance_is_not_ready(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    for _ in 0..2 {
        let result = run(&store, owner, Some(id), Load::default()).await;
        assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
    }
}

/// SPEC §6.2: an instance never saved with data loads only with `accept_uninitialized`.
pub async fn an_uninitialized_instance_loads_only_when_accepted(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = uninitialized_instance(&store, owner).await;
    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
    let view = ok(&other, reader, Some(id), ACCEPT).await;
    assert_eq!(
        (view.instance, view.state),
        (Some(id), InstanceState::Uninitialized)
    );
    assert!(view.is_locked());
}

/// SPEC §6.2: a completed instance answers `InstanceComplete`, with or without
/// `accept_uninitialized`.
pub async fn load_of_a_completed_instance_is_instance_complete(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let view = ok(
        &store,
        owner,
        Some(id),
        Save::data(bag([("a", 1i64)])).and_complete(),
    )
    .await;
    assert_eq!(view.state, InstanceState::Completed);
    for load in [Load::default(), ACCEPT] {
        let result = run(&store, owner, Some(id), load).await;
        assert_err!(result, StoreError::InstanceComplete { instance } if instance == id);
    }
}

/// SPEC §6.2: a successful load is lock-bound and shows state, data, metadata, keys (associated
/// and completed), projected fields and the lock version.
pub async fn load_returns_state_data_metadata_keys_and_lock_version(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (k1, k2) = (KeyId::new(), KeyId::new());
    let mut create = LoadByKey::or_create(k1);
    create.keys_to_associate = vec![NewKey {
        key: k2,
        metadata: bag([("k", "two")]),
    }];
    let timer = env.now().plus(std::time::Duration::from_secs(3600));
    let mut save = Save::data(bag([("orders:total", 99i64)]))
        .with_timer(timer)
        .and_unlock();
    save.metadata_changes = vec![("meta:site".into(), MetadataChange::Set("eu".into()))];
    save.keys_to_complete = vec![k2];
    save.bookmarks = vec!["approve".into()];
    let id = by_key(&store, owner, create, save).await;

    let (other, reader) = other_host(env, None).await;
    let h = env.handle(&other, reader, Some(id));
    let view = other.execute(&h, Load::default(), T).await.expect("load");
    let bound = (view.owner, view.instance, view.state);
    assert_eq!(bound, (Some(reader), Some(id), InstanceState::Initialized));
    assert_eq!(view.data, bag([("orders:total", 99i64)]));
    assert_eq!(view.metadata, bag([("meta:site", "eu")]));
    assert_eq!(view.keys.len(), 2);
    assert_eq!(view.keys[&k1].state, KeyState::Associated);
    assert_eq!(view.keys[&k2].state, KeyState::Completed);
    assert_eq!(view.keys[&k2].metadata, bag([("k", "two")]));
    assert_eq!(
        (view.timer, view.status),
        (Some(timer), Some(ExecutionStatus::Idle))
    );
    assert_eq!(view.bookmarks, vec!["approve".to_owned()]);
    assert_eq!(
        view.lock_version,
        Some(2),
        "the lock passed to another owner"
    );
    assert_eq!((h.instance(), h.lock_version()), (Some(id), Some(2)));
    let save = Save::data(bag([("orders:total", 100i64)]));
    other
        .execute(&h, save, T)
        .await
        .expect("the lock-bound handle saves");
}

/// SPEC §6.2: loading (by id or by key) takes a runnable instance out of the runnable set.
pub async fn loading_removes_the_instance_from_the_runnable_set(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let executing = || Save::data(bag([("a", 1i64)])).with_status(ExecutionStatus::Executing);
    let key = KeyId::new();
    let by_key_id = by_key(
        &store,
        owner,
        LoadByKey::or_create(key),
        executing().and_unlock(),
    )
    .await;
    let (by_id, control) = (InstanceId::new(), InstanceId::new());
    for id in [by_id, control] {
        ok(&store, owner, Some(id), executing().and_unlock()).await;
    }
    let (other, loader) = other_host(env, Some("orders")).await;
    // Keep both handles: dropping them would unlock the instances, making them runnable again.
    let h1 = env.handle(&other, loader, Some(by_id));
    other
        .execute(&h1, Load::default(), T)
        .await
        .expect("load by id");
    let h2 = env.handle(&other, loader, None);
    let view = other
        .execute(&h2, LoadByKey::new(key), T)
        .await
        .expect("load by key");
    assert_eq!(view.instance, Some(by_key_id));

    let runner = env.handle(&store, owner, None);
    let view = store
        .execute(&runner, Command::TryLoadRunnable, T)
        .await
        .expect("try");
    assert_eq!(
        view.instance,
        Some(control),
        "only the instance nobody loaded is left"
    );
    let view = ok(&store, owner, None, Command::TryLoadRunnable).await;
    assert_eq!(view.instance, None);
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! load_cases {
    ($make:path) => {
        $crate::__case!($make, load::load_needs_an_owner_and_an_instance_id);
        $crate::__case!(
            $make,
            load::load_accepting_uninitialized_creates_a_locked_uninitialized_instance
        );
        $crate::__case!($make, load::load_of_a_missing_instance_is_not_ready);
        $crate::__case!(
            $make,
            load::an_uninitialized_instance_loads_only_when_accepted
        );
        $crate::__case!(
            $make,
            load::load_of_a_completed_instance_is_instance_complete
        );
        $crate::__case!(
            $make,
            load::load_returns_state_data_metadata_keys_and_lock_version
        );
        $crate::__case!(
            $make,
            load::loading_removes_the_instance_from_the_runnable_set
        );
        $crate::__case!(
            $make,
            load::load_by_key_needs_an_owner_an_unbound_handle_and_a_non_nil_key
        );
        $crate::__case!(
            $make,
            load::load_by_key_argument_rules_are_checked_before_anything_changes
        );
        $crate::__case!(
            $make,
            load::load_by_key_creates_an_instance_for_an_unknown_key
        );
        $crate::__case!(
            $make,
            load::load_by_key_creates_the_instance_with_the_given_id
        );
        $crate::__case!($make, load::load_by_key_of_an_unknown_key_is_key_not_ready);
        $crate::__case!(
            $make,
            load::creating_a_key_for_an_initialized_instance_is_an_instance_collision
        );
        $crate::__case!(
            $make,
            load::a_key_can_be_created_for_an_uninitialized_instance
        );
        $crate::__case!(
            $make,
            load::a_key_of_another_instance_in_keys_to_associate_is_a_key_collision
        );
        $crate::__case!(
            $make,
            load::concurrent_creators_of_one_new_key_end_with_one_instance
        );
        $crate::__case!($make, load::load_by_key_loads_the_instance_its_key_names);
        $crate::__case!(
            $make,
            load::load_by_key_of_an_uninitialized_instance_needs_accept_uninitialized
        );
    };
}
