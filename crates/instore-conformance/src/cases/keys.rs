//! SPEC §7: the key lifecycle and its errors.
//!
//! | rule (SPEC §7, §6.4 keys) | cases |
//! |---|---|
//! | a key is a non-nil UUID | `nil_keys_are_rejected`, `load::load_by_key_needs_an_owner_an_unbound_handle_and_a_non_nil_key` |
//! | lifecycle associate → complete → free (freeing removes it) | `keys_go_from_associated_to_completed_to_freed`, `one_save_associates_then_completes_then_frees` |
//! | associating a present key (on any instance, this one included) → `InstanceKeyCollision` | `associating_a_present_key_is_a_key_collision` |
//! | completing a key not associated with this instance → `InstanceKeyNotReady` | `completing_a_key_not_associated_with_this_instance_is_key_not_ready` |
//! | completing a completed key → `InstanceKeyComplete` | `completing_a_completed_key_is_key_complete` |
//! | freeing a key that is not completed (or not this instance's) → `InstanceKeyNotReady` | `freeing_a_key_that_is_not_completed_is_key_not_ready` |
//! | key metadata is write-once | `key_metadata_is_written_once` |
//! | loads by a completed key → `InstanceKeyComplete` until it is freed | `completed_key_answers_key_complete_until_freed` |
//! | `complete` completes the remaining associated keys | `completing_an_instance_completes_its_keys` |
//! | deleting an instance deletes its keys; they can create a fresh instance | `deleting_an_instance_frees_its_keys` |
//! | a failing key change changes nothing (commands are atomic) | `a_failing_key_change_changes_nothing` |

use instore::{
    bag, CompletionAction, InstanceHandle, InstanceId, InstanceState, InstanceStore, KeyId,
    KeyState, Load, LoadByKey, NewKey, OwnerId, Save, StoreError, StoreSettings, Uuid,
};

use crate::harness::*;

/// A new, initialized instance holding `keys`, locked by the returned handle.
async fn keyed(
    store: &InstanceStore,
    owner: OwnerId,
    keys: &[KeyId],
) -> (InstanceHandle, InstanceId) {
    let id = InstanceId::new();
    let h = store.create_handle_for(Some(owner), Some(id));
    store
        .execute(&h, associate(Save::data(bag([("v", 1i64)])), keys), T)
        .await
        .expect("create");
    (h, id)
}

fn associate(mut save: Save, keys: &[KeyId]) -> Save {
    save.keys_to_associate = keys.iter().map(|k| NewKey::from(*k)).collect();
    save
}

fn complete(keys: &[KeyId]) -> Save {
    Save {
        keys_to_complete: keys.to_vec(),
        ..Save::default()
    }
}

fn free(keys: &[KeyId]) -> Save {
    Save {
        keys_to_free: keys.to_vec(),
        ..Save::default()
    }
}

/// The instance a load by key answers with.
async fn load_by(
    store: &InstanceStore,
    owner: OwnerId,
    command: LoadByKey,
) -> Result<InstanceId, StoreError> {
    let view = run(store, owner, None, command).await?;
    Ok(view.instance.expect("a load binds the instance"))
}

/// SPEC §7: a key in the lists of a save must not be nil.
pub async fn nil_keys_are_rejected(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (h, _) = keyed(&store, owner, &[]).await;
    let nil = KeyId::from_uuid(Uuid::nil());
    for save in [
        associate(Save::default(), &[nil]),
        complete(&[nil]),
        free(&[nil]),
    ] {
        assert_err!(store.execute(&h, save, T).await, StoreError::Invalid { .. });
    }
}

/// SPEC §7: associate → complete → free, as the views show it.
pub async fn keys_go_from_associated_to_completed_to_freed(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let (h, _) = keyed(&store, owner, &[]).await;
    let view = store
        .execute(&h, associate(Save::default(), &[key]), T)
        .await
        .expect("associate");
    assert_eq!(view.keys[&key].state, KeyState::Associated);
    let view = store
        .execute(&h, complete(&[key]), T)
        .await
        .expect("complete");
    assert_eq!(view.keys[&key].state, KeyState::Completed);
    let view = store.execute(&h, free(&[key]), T).await.expect("free");
    assert!(!view.keys.contains_key(&key), "{view:?}");
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("re-read");
    assert!(view.keys.is_empty(), "freed for good: {view:?}");
}

/// SPEC §7: one save associates, then completes, then frees, so a key can go through all three
/// in one save; a key associated and freed without completing is `InstanceKeyNotReady`.
pub async fn one_save_associates_then_completes_then_frees(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (gone, done, old) = (KeyId::new(), KeyId::new(), KeyId::new());
    let (h, _) = keyed(&store, owner, &[old]).await;
    let mut save = associate(complete(&[gone, done, old]), &[gone, done]);
    save.keys_to_free = vec![gone, old];
    let view = store
        .execute(&h, save, T)
        .await
        .expect("all three steps in one save");
    assert_eq!(view.keys.keys().collect::<Vec<_>>(), vec![&done]);
    assert_eq!(view.keys[&done].state, KeyState::Completed);

    let skipped = KeyId::new();
    let save = associate(free(&[skipped]), &[skipped]);
    let result = store.execute(&h, save, T).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key } if key == skipped);
}

/// SPEC §7: associating a key that is present — on another instance, or on this one, associated
/// or completed — is `InstanceKeyCollision` naming its instance; nothing changes.
pub async fn associating_a_present_key_is_a_key_collision(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (kx, ky, ky_done) = (KeyId::new(), KeyId::new(), KeyId::new());
    let (_hx, x) = keyed(&store, owner, &[kx]).await;
    let (hy, y) = keyed(&store, owner, &[ky, ky_done]).await;
    store
        .execute(&hy, complete(&[ky_done]), T)
        .await
        .expect("complete");
    for (key, holder) in [(kx, x), (ky, y), (ky_done, y)] {
        let save = associate(Save::data(bag([("v", 2i64)])), &[key]);
        let result = store.execute(&hy, save, T).await;
        assert_err!(result, StoreError::InstanceKeyCollision { key: k, instance } if k == key && instance == holder);
    }
    let view = store
        .execute(&hy, Load::default(), T)
        .await
        .expect("re-read");
    assert_eq!(
        view.data,
        bag([("v", 1i64)]),
        "the failed saves changed nothing"
    );
    assert_eq!(view.keys.len(), 2);
    assert_eq!(view.keys[&ky].state, KeyState::Associated);
    assert_eq!(view.keys[&ky_done].state, KeyState::Completed);

    // Through LoadByKey as well: a key already on the found instance itself.
    store
        .execute(&hy, Save::default().and_unlock(), T)
        .await
        .expect("unlock");
    let mut command = LoadByKey::new(ky);
    command.keys_to_associate = vec![ky_done.into()];
    let result = load_by(&store, owner, command).await;
    assert_err!(result, StoreError::InstanceKeyCollision { key, instance } if key == ky_done && instance == y);
}

/// SPEC §7: completing an unknown key, or another instance's key, is `InstanceKeyNotReady`; the
/// other instance's key is left alone.
pub async fn completing_a_key_not_associated_with_this_instance_is_key_not_ready(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (kx, unknown) = (KeyId::new(), KeyId::new());
    let (hx, x) = keyed(&store, owner, &[kx]).await;
    store
        .execute(&hx, Save::default().and_unlock(), T)
        .await
        .expect("unlock x");
    let (h, _) = keyed(&store, owner, &[]).await;
    for key in [unknown, kx] {
        let result = store.execute(&h, complete(&[key]), T).await;
        assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
    }
    let still = load_by(&store, owner, LoadByKey::new(kx)).await;
    assert_eq!(still.expect("kx still leads to x"), x);
}

/// SPEC §7: completing a completed key is `InstanceKeyComplete`.
pub async fn completing_a_completed_key_is_key_complete(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let (h, _) = keyed(&store, owner, &[key]).await;
    store
        .execute(&h, complete(&[key]), T)
        .await
        .expect("complete");
    let result = store.execute(&h, complete(&[key]), T).await;
    assert_err!(result, StoreError::InstanceKeyComplete { key: k } if k == key);
}

/// SPEC §7: freeing an associated key, an unknown key or another instance's completed key is
/// `InstanceKeyNotReady`; the keys stay as they were.
pub async fn freeing_a_key_that_is_not_completed_is_key_not_ready(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (key, other_done, unknown) = (KeyId::new(), KeyId::new(), KeyId::new());
    let (hx, _) = keyed(&store, owner, &[other_done]).await;
    store
        .execute(&hx, complete(&[other_done]), T)
        .await
        .expect("complete x's key");
    let (h, _) = keyed(&store, owner, &[key]).await;
    for k in [key, unknown, other_done] {
        let result = store.execute(&h, free(&[k]), T).await;
        assert_err!(result, StoreError::InstanceKeyNotReady { key } if key == k);
    }
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("re-read");
    assert_eq!(view.keys[&key].state, KeyState::Associated);
    let view = store
        .execute(&hx, Load::default(), T)
        .await
        .expect("re-read x");
    assert_eq!(view.keys[&other_done].state, KeyState::Completed);
}

/// SPEC §6.4/§7: key metadata is stored at association and never changes: not by a second
/// association attempt, not by completing the key.
pub async fn key_metadata_is_written_once(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let (h, id) = keyed(&store, owner, &[]).await;
    let with_name = |name: &str| {
        let metadata = bag([("name", name)]);
        Save {
            keys_to_associate: vec![NewKey { key, metadata }],
            ..Save::default()
        }
    };
    store
        .execute(&h, with_name("order-42"), T)
        .await
        .expect("associate");
    let result = store.execute(&h, with_name("order-43"), T).await;
    assert_err!(result, StoreError::InstanceKeyCollision { .. });
    let view = store
        .execute(&h, complete(&[key]).and_unlock(), T)
        .await
        .expect("complete key");
    assert_eq!(view.keys[&key].metadata, bag([("name", "order-42")]));

    let other = env.store();
    let reader = env.owner(&other, None).await;
    let view = ok(&other, reader, Some(id), Load::default()).await;
    assert_eq!(view.keys[&key].state, KeyState::Completed);
    assert_eq!(view.keys[&key].metadata, bag([("name", "order-42")]));
}

/// SPEC §7, §6.3: a load by a completed key — creating or not — answers `InstanceKeyComplete`
/// until the key is freed; then the key is unknown and can create a new instance.
pub async fn completed_key_answers_key_complete_until_freed(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let (h, id) = keyed(&store, owner, &[key]).await;
    store
        .execute(&h, complete(&[key]), T)
        .await
        .expect("complete");
    let other = env.store();
    let reader = env.owner(&other, None).await;
    for command in [LoadByKey::new(key), LoadByKey::or_create(key)] {
        let result = load_by(&other, reader, command).await;
        assert_err!(result, StoreError::InstanceKeyComplete { key: k } if k == key);
    }
    store
        .execute(&h, free(&[key]).and_unlock(), T)
        .await
        .expect("free");
    let result = load_by(&other, reader, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
    let fresh = load_by(&other, reader, LoadByKey::or_create(key)).await;
    assert_ne!(
        fresh.expect("a freed key creates anew"),
        id,
        "a new instance"
    );
}

/// SPEC §7, §6.4: completing an instance completes its remaining associated keys (Keep: loads by
/// them answer `InstanceKeyComplete`).
pub async fn completing_an_instance_completes_its_keys(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (k1, k2, k3) = (KeyId::new(), KeyId::new(), KeyId::new());
    let (h, _) = keyed(&store, owner, &[k1, k2, k3]).await;
    store
        .execute(&h, complete(&[k3]), T)
        .await
        .expect("complete k3 first");
    let save = Save::data(bag([("v", 2i64)])).and_complete();
    let view = store.execute(&h, save, T).await.expect("complete");
    assert_eq!(view.state, InstanceState::Completed);
    assert!(
        view.keys.values().all(|k| k.state == KeyState::Completed),
        "{view:?}"
    );
    for key in [k1, k2, k3] {
        let result = load_by(&store, owner, LoadByKey::or_create(key)).await;
        assert_err!(result, StoreError::InstanceKeyComplete { key: k } if k == key);
    }
}

/// SPEC §7: deleting an instance (completion action `DeleteAll`) deletes its keys, associated
/// and completed; they then create fresh instances.
pub async fn deleting_an_instance_frees_its_keys(env: &Env) {
    let settings = StoreSettings {
        completion: CompletionAction::DeleteAll,
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let owner = env.owner(&store, None).await;
    let (k1, k2) = (KeyId::new(), KeyId::new());
    let (h, id) = keyed(&store, owner, &[k1, k2]).await;
    store
        .execute(&h, complete(&[k2]), T)
        .await
        .expect("complete k2");
    let save = Save::data(bag([("v", 2i64)])).and_complete();
    store
        .execute(&h, save, T)
        .await
        .expect("complete and delete");
    for key in [k1, k2] {
        let result = load_by(&store, owner, LoadByKey::new(key)).await;
        assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
        let fresh = load_by(&store, owner, LoadByKey::or_create(key)).await;
        assert_ne!(fresh.expect("creates anew"), id);
    }
}

/// SPEC §6 atomicity for keys: when one key change of a save fails, the earlier ones (and the
/// data) are not applied.
pub async fn a_failing_key_change_changes_nothing(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (held, new, unknown) = (KeyId::new(), KeyId::new(), KeyId::new());
    let (h, _) = keyed(&store, owner, &[held]).await;
    let mut save = associate(Save::data(bag([("v", 2i64)])), &[new]);
    save.keys_to_complete = vec![held];
    save.keys_to_free = vec![unknown];
    let result = store.execute(&h, save, T).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key } if key == unknown);
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("the lock is still held");
    assert_eq!(view.data, bag([("v", 1i64)]));
    assert_eq!(view.keys.keys().collect::<Vec<_>>(), vec![&held]);
    assert_eq!(view.keys[&held].state, KeyState::Associated);
    let result = load_by(&store, owner, LoadByKey::new(new)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! keys_cases {
    ($make:path) => {
        $crate::__case!($make, keys::nil_keys_are_rejected);
        $crate::__case!($make, keys::keys_go_from_associated_to_completed_to_freed);
        $crate::__case!($make, keys::one_save_associates_then_completes_then_frees);
        $crate::__case!($make, keys::associating_a_present_key_is_a_key_collision);
        $crate::__case!(
            $make,
            keys::completing_a_key_not_associated_with_this_instance_is_key_not_ready
        );
        $crate::__case!($make, keys::completing_a_completed_key_is_key_complete);
        $crate::__case!(
            $make,
            keys::freeing_a_key_that_is_not_completed_is_key_not_ready
        );
        $crate::__case!($make, keys::key_metadata_is_written_once);
        $crate::__case!($make, keys::completed_key_answers_key_complete_until_freed);
        $crate::__case!($make, keys::completing_an_instance_completes_its_keys);
        $crate::__case!($make, keys::deleting_an_instance_frees_its_keys);
        $crate::__case!($make, keys::a_failing_key_change_changes_nothing);
    };
}
