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

use std::sync::Arc;

use instore::{
    bag, Command, ExecutionStatus, InstanceId, InstanceState, InstanceStore, InstanceView, KeyId,
    KeyState, Load, LoadByKey, MetadataChange, NewKey, OwnerId, Save, StoreError, Uuid,
};

use crate::harness::*;

/// Asserts that `result` is an error matching the pattern (guards allowed).
macro_rules! assert_err {
    ($result:expr, $($pattern:tt)+) => {
        match $result {
            Ok(v) => panic!("expected {}, got {v:?}", stringify!($($pattern)+)),
            Err(e) => {
                let shown = format!("{e:?}");
                assert!(matches!(e, $($pattern)+), "expected {}, got {shown}", stringify!($($pattern)+));
            }
        }
    };
}

const ACCEPT: Load = Load {
    accept_uninitialized: true,
    allow_suspended: false,
};

/// Runs `command` on a fresh handle of `owner` bound to `instance` (the handle is then dropped).
async fn run(
    store: &InstanceStore,
    owner: OwnerId,
    instance: Option<InstanceId>,
    command: impl Into<Command>,
) -> Result<InstanceView, StoreError> {
    store
        .execute(&store.create_handle_for(Some(owner), instance), command, T)
        .await
}

/// As [`run`], expecting success.
async fn ok(
    store: &InstanceStore,
    owner: OwnerId,
    instance: Option<InstanceId>,
    command: impl Into<Command>,
) -> InstanceView {
    let command = command.into();
    let name = command.name().to_owned();
    let result = run(store, owner, instance, command).await;
    result.unwrap_or_else(|e| panic!("{name} failed: {e:?}"))
}

/// A second host with its own owner, to look at an instance from outside.
async fn other_host(env: &Env, host_type: Option<&str>) -> (InstanceStore, OwnerId) {
    let store = env.store();
    let owner = env.owner(&store, host_type).await;
    (store, owner)
}

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

/// SPEC §6.3: LoadByKey needs an owner, a handle without an instance, and a non-nil key.
pub async fn load_by_key_needs_an_owner_an_unbound_handle_and_a_non_nil_key(env: &Env) {
    let store = env.store();
    let key = KeyId::new();
    let unowned = store.create_handle_for(None, None);
    let result = store.execute(&unowned, LoadByKey::or_create(key), T).await;
    assert_err!(result, StoreError::Invalid { .. });
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let result = run(&store, owner, Some(id), LoadByKey::or_create(key)).await;
    assert_err!(result, StoreError::AlreadyBoundToInstance { instance } if instance == id);
    let nil = KeyId::from_uuid(Uuid::nil());
    let result = run(&store, owner, None, LoadByKey::or_create(nil)).await;
    assert_err!(result, StoreError::Invalid { .. });
    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
}

/// SPEC §6.3: the lookup key may be in `keys_to_associate` only with `create_with_id`, which
/// needs `accept_uninitialized`; a rejected command creates nothing.
pub async fn load_by_key_argument_rules_are_checked_before_anything_changes(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, id) = (KeyId::new(), InstanceId::new());
    let mut self_listed = LoadByKey::or_create(key);
    self_listed.keys_to_associate = vec![key.into()];
    assert_err!(
        run(&store, owner, None, self_listed).await,
        StoreError::Invalid { .. }
    );
    let mut not_accepting = LoadByKey::new(key);
    not_accepting.create_with_id = Some(id);
    assert_err!(
        run(&store, owner, None, not_accepting).await,
        StoreError::Invalid { .. }
    );
    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
    let result = run(&store, owner, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { .. });
}

/// SPEC §6.3: an unknown key with `accept_uninitialized` creates a new, locked instance with the
/// key and the keys to associate (with their metadata).
pub async fn load_by_key_creates_an_instance_for_an_unknown_key(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, extra) = (KeyId::new(), KeyId::new());
    let h = env.handle(&store, owner, None);
    let mut command = LoadByKey::or_create(key);
    command.keys_to_associate = vec![NewKey {
        key: extra,
        metadata: bag([("k", 1i64)]),
    }];
    let view = store.execute(&h, command, T).await.expect("create");
    let id = view.instance.expect("bound to the new instance");
    assert!(!id.is_nil());
    let created = (view.state, view.lock_version, h.instance());
    assert_eq!(created, (InstanceState::Uninitialized, Some(1), Some(id)));
    assert_eq!(view.keys.len(), 2);
    assert_eq!(view.keys[&key].state, KeyState::Associated);
    assert_eq!(view.keys[&extra].state, KeyState::Associated);
    assert_eq!(view.keys[&extra].metadata, bag([("k", 1i64)]));

    let (other, reader) = other_host(env, None).await;
    for k in [key, extra] {
        let result = run(&other, reader, None, LoadByKey::or_create(k)).await;
        assert_err!(result, StoreError::InstanceLocked { instance, .. } if instance == id);
    }
}

/// SPEC §6.3: with `create_with_id` the new instance gets that id; the lookup key may then be
/// listed in `keys_to_associate`, which gives its metadata.
pub async fn load_by_key_creates_the_instance_with_the_given_id(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, id) = (KeyId::new(), InstanceId::new());
    let mut command = LoadByKey::or_create(key);
    command.create_with_id = Some(id);
    command.keys_to_associate = vec![NewKey {
        key,
        metadata: bag([("name", "order-42")]),
    }];
    let h = env.handle(&store, owner, None);
    let view = store.execute(&h, command, T).await.expect("create");
    let created = (view.instance, view.state, h.instance());
    assert_eq!(created, (Some(id), InstanceState::Uninitialized, Some(id)));
    assert_eq!(view.keys.len(), 1, "the lookup key once: {:?}", view.keys);
    let metadata = &view.keys[&key].metadata;
    assert_eq!(
        metadata,
        &bag([("name", "order-42")]),
        "the lookup key's metadata is stored"
    );
}

/// SPEC §6.3: an unknown key without `accept_uninitialized` is `InstanceKeyNotReady`; the keys
/// to associate are not associated.
pub async fn load_by_key_of_an_unknown_key_is_key_not_ready(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, extra) = (KeyId::new(), KeyId::new());
    let mut command = LoadByKey::new(key);
    command.keys_to_associate = vec![extra.into()];
    let result = run(&store, owner, None, command).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
    let result = run(&store, owner, None, LoadByKey::new(extra)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == extra);
}

/// SPEC §6.3: a new key cannot create an instance whose id names an initialized one; the key
/// stays unknown and the instance untouched.
pub async fn creating_a_key_for_an_initialized_instance_is_an_instance_collision(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    ok(
        &store,
        owner,
        Some(id),
        Save::data(bag([("a", 1i64)])).and_unlock(),
    )
    .await;
    let key = KeyId::new();
    let mut command = LoadByKey::or_create(key);
    command.create_with_id = Some(id);
    let result = run(&store, owner, None, command).await;
    assert_err!(result, StoreError::InstanceCollision { instance } if instance == id);
    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
    let (other, reader) = other_host(env, None).await;
    let view = ok(&other, reader, Some(id), Load::default()).await;
    assert!(view.keys.is_empty(), "untouched, and not locked: {view:?}");
}

/// SPEC §6.3: `create_with_id` may name an instance that exists but is uninitialized.
pub async fn a_key_can_be_created_for_an_uninitialized_instance(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = uninitialized_instance(&store, owner).await;
    let key = KeyId::new();
    let mut command = LoadByKey::or_create(key);
    command.create_with_id = Some(id);
    let view = ok(&store, owner, None, command).await;
    assert_eq!(
        (view.instance, view.state),
        (Some(id), InstanceState::Uninitialized)
    );
    assert_eq!(view.keys[&key].state, KeyState::Associated);
}

/// SPEC §6.3: a key of another instance in `keys_to_associate` is `InstanceKeyCollision`,
/// whether the lookup key is new or found; nothing is created, locked or associated.
pub async fn a_key_of_another_instance_in_keys_to_associate_is_a_key_collision(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (kx, ky, fresh, extra) = (KeyId::new(), KeyId::new(), KeyId::new(), KeyId::new());
    let save = || Save::data(bag([("a", 1i64)])).and_unlock();
    let x = by_key(&store, owner, LoadByKey::or_create(kx), save()).await;
    let y = by_key(&store, owner, LoadByKey::or_create(ky), save()).await;
    for mut lookup in [LoadByKey::or_create(fresh), LoadByKey::new(ky)] {
        lookup.keys_to_associate = vec![extra.into(), kx.into()];
        let result = run(&store, owner, None, lookup).await;
        assert_err!(result, StoreError::InstanceKeyCollision { key, instance } if key == kx && instance == x);
    }
    let (other, reader) = other_host(env, None).await;
    for k in [fresh, extra] {
        let result = run(&other, reader, None, LoadByKey::new(k)).await;
        assert_err!(result, StoreError::InstanceKeyNotReady { .. });
    }
    let view = ok(&other, reader, None, LoadByKey::new(ky)).await;
    assert_eq!(view.instance, Some(y), "y is not locked");
    assert_eq!(
        view.keys.keys().collect::<Vec<_>>(),
        vec![&ky],
        "y got no new key"
    );
}

/// SPEC §6.3: 32 owners in 4 hosts racing to create one new key end with exactly one instance;
/// each loser gets `InstanceLocked` for that instance.
pub async fn concurrent_creators_of_one_new_key_end_with_one_instance(env: &Env) {
    let key = KeyId::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = env.store();
        for _ in 0..8 {
            let owner = env.owner(&store, None).await;
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let h = store.create_handle_for(Some(owner), None);
                barrier.wait().await;
                let result = store.execute(&h, LoadByKey::or_create(key), T).await;
                (result, h) // keep the handle (and any lock) until every racer is done
            }));
        }
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("the racer does not panic"));
    }
    // Every racer keeps its handle, so the winner keeps its lock throughout: exactly one
    // success, and every loser is told who holds the instance.
    let won = results.iter().filter_map(|(r, _)| r.as_ref().ok());
    let winners: Vec<InstanceId> = won.filter_map(|v| v.instance).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer holds the new instance: {winners:?}"
    );
    let id = winners[0];
    for (result, _) in results.iter().filter(|(r, _)| r.is_err()) {
        assert_err!(result, StoreError::InstanceLocked { instance, .. } if *instance == id);
    }
    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, None, LoadByKey::or_create(key)).await;
    assert_err!(result, StoreError::InstanceLocked { instance, .. } if instance == id);
}

/// SPEC §6.3: a found key loads its instance as Load does, binding the handle to it; further
/// keys are associated with it; another live holder answers `InstanceLocked`.
pub async fn load_by_key_loads_the_instance_its_key_names(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, extra) = (KeyId::new(), KeyId::new());
    let save = Save::data(bag([("a", 1i64)])).and_unlock();
    let id = by_key(&store, owner, LoadByKey::or_create(key), save).await;

    let (other, reader) = other_host(env, None).await;
    let h = env.handle(&other, reader, None);
    let mut command = LoadByKey::new(key);
    command.keys_to_associate = vec![extra.into()];
    let view = other.execute(&h, command, T).await.expect("load by key");
    let loaded = (view.instance, view.state, view.lock_version);
    assert_eq!(loaded, (Some(id), InstanceState::Initialized, Some(2)));
    assert_eq!(view.data, bag([("a", 1i64)]));
    assert_eq!(view.keys[&key].state, KeyState::Associated);
    assert_eq!(view.keys[&extra].state, KeyState::Associated);
    assert_eq!((h.instance(), h.lock_version()), (Some(id), Some(2)));
    let saved = other.execute(&h, Save::data(bag([("a", 2i64)])), T).await;
    assert_eq!(
        saved.expect("save on the bound handle").lock_version,
        Some(2)
    );

    let result = run(&store, owner, None, LoadByKey::new(extra)).await;
    assert_err!(result, StoreError::InstanceLocked { instance, owner: o, .. } if instance == id && o == reader);
}

/// SPEC §6.3 (as §6.2): an instance found by key that is still uninitialized loads only with
/// `accept_uninitialized`, and then it is that instance, not a new one.
pub async fn load_by_key_of_an_uninitialized_instance_needs_accept_uninitialized(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let id = by_key(
        &store,
        owner,
        LoadByKey::or_create(key),
        Save::default().and_unlock(),
    )
    .await;
    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
    let view = ok(&store, owner, None, LoadByKey::or_create(key)).await;
    assert_eq!(
        (view.instance, view.state),
        (Some(id), InstanceState::Uninitialized)
    );
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
