//! SPEC §6.3 LoadByKey: cases of [`super`] (re-exported there; its `//!` table maps the rules to
//! them).

use std::sync::Arc;

use instore::{
    bag, InstanceId, InstanceState, KeyId, KeyState, Load, LoadByKey, NewKey, Save, StoreError,
    Uuid,
};

use super::{by_key, uninitialized_instance};
use crate::harness::*;

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
