//! SPEC §3 ▲ the size limit, and the `OPTIONAL` and `WRITE_ONLY` values it counts: cases of
//! [`super`] (re-exported there; its `//!` table maps the rules to them).

use instore::{
    bag, Command, ExecutionStatus, InstanceId, InstanceStore, InstanceValue, KeyId, Load,
    LoadByKey, Save, StoreError, StoreSettings, SuspendChange,
};

use super::{changes, noise};
use crate::harness::*;

fn limited(env: &Env, max_payload_bytes: usize) -> InstanceStore {
    env.store_with(
        StoreSettings {
            max_payload_bytes,
            ..env.settings()
        },
        Vec::new(),
    )
    .0
}

/// SPEC §3 write-only + size limit: a write-only value is stored, so it counts toward the size.
pub async fn write_only_values_count_toward_the_size_limit(env: &Env) {
    let store = limited(env, 2_000);
    let owner = env.owner(&store, None).await;
    let log = InstanceValue::write_only(noise(5_000, 1));
    let save = Save::data(bag([("a", InstanceValue::new(1i64)), ("log", log)]));
    let result = run(&store, owner, Some(InstanceId::new()), save).await;
    assert_err!(result, StoreError::PayloadTooLarge { limit: 2_000, .. });
}

/// SPEC §3 `OPTIONAL`: values that do not fit are dropped, the save succeeds, the rest is kept;
/// optional values that fit are kept.
pub async fn optional_values_are_dropped_rather_than_failing_a_save(env: &Env) {
    let store = limited(env, 2_000);
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let small = InstanceValue::optional("fits");
    let mut save = Save::data(bag([
        ("keep", InstanceValue::new(7i64)),
        ("small-opt", small.clone()),
        ("big-opt", InstanceValue::optional(noise(5_000, 2))),
    ]))
    .and_unlock();
    let big = InstanceValue::optional(noise(5_000, 3));
    save.metadata_changes = vec![set("meta:keep", "m"), set("meta:big", big)];
    let view = ok(&store, owner, Some(id), save).await;
    let want = bag([("keep", InstanceValue::new(7i64)), ("small-opt", small)]);
    assert_eq!(
        (&view.data, &view.metadata),
        (&want, &bag([("meta:keep", "m")]))
    );
    let view = ok(&store, owner, Some(id), Load::default()).await;
    assert_eq!(
        view.data, want,
        "reloaded: the big optional value dropped, the rest kept"
    );
    assert_eq!(view.metadata, bag([("meta:keep", "m")]));
}

/// SPEC §3 ▲: a save over the limit fails with `PayloadTooLarge { size, limit }` and changes
/// nothing: not the data, metadata, keys, projected fields, suspension or lock.
pub async fn payload_too_large_changes_nothing(env: &Env) {
    let store = limited(env, 10_000);
    let owner = env.owner(&store, Some("orders")).await;
    let (id, k1, k2) = (InstanceId::new(), KeyId::new(), KeyId::new());
    let h = env.handle(&store, owner, Some(id));
    let mut first = Save::data(bag([("v", 1i64)]));
    first.metadata_changes = vec![set("m", "a")];
    first.keys_to_associate = vec![k1.into()];
    let before = store.execute(&h, first, T).await.expect("first save");

    let big = InstanceValue::new(noise(20_000, 5));
    let mut too_big = Save::data(bag([("v", InstanceValue::new(2i64)), ("big", big)]))
        .with_timer(env.now())
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    too_big.metadata_changes = vec![set("m", "b")];
    too_big.keys_to_associate = vec![k2.into()];
    too_big.keys_to_complete = vec![k1];
    too_big.bookmarks = vec!["approve".into()];
    too_big.suspend = SuspendChange::Suspend {
        reason: "r".into(),
        exception: None,
    };
    let result = store.execute(&h, too_big, T).await;
    let Err(StoreError::PayloadTooLarge { size, limit }) = result else {
        panic!("expected PayloadTooLarge, got {result:?}")
    };
    assert_eq!(limit, 10_000);
    assert!(size > 20_000, "size {size} counts the 20 000 bytes");

    // A metadata-only save over the limit fails the same way.
    let blob = changes(vec![set("blob", noise(20_000, 6))]);
    let result = store.execute(&h, blob, T).await;
    assert_err!(result, StoreError::PayloadTooLarge { limit: 10_000, .. });

    assert_eq!(
        h.lock_version(),
        before.lock_version,
        "the handle keeps its lock"
    );
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("the holder re-reads");
    assert_eq!(
        (&view.data, &view.metadata),
        (&before.data, &bag([("m", "a")]))
    );
    assert_eq!(
        view.keys, before.keys,
        "k1 still associated, k2 never associated"
    );
    assert_eq!(
        (view.timer, view.status, view.bookmarks.len()),
        (None, before.status, 0)
    );
    assert_eq!(view.suspension, None);

    let other = env.store();
    let reader = env.owner(&other, Some("orders")).await;
    let result = run(&other, reader, None, LoadByKey::new(k2)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { key } if key == k2);
    let result = run(&other, reader, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceLocked { owner: o, .. } if o == owner);
    let view = ok(&other, reader, None, Command::TryLoadRunnable).await;
    assert_eq!(
        view.instance, None,
        "the failed unlock made nothing runnable"
    );
}

/// SPEC §3 ▲: a too-large save on a handle without a lock neither creates nor locks the instance.
pub async fn an_acquiring_save_that_is_too_large_creates_nothing(env: &Env) {
    let store = limited(env, 1_000);
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let save = Save::data(bag([("big", noise(5_000, 7))]));
    let result = run(&store, owner, Some(id), save).await;
    assert_err!(result, StoreError::PayloadTooLarge { limit: 1_000, .. });
    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), Load::default()).await;
    assert_err!(result, StoreError::InstanceNotReady { instance } if instance == id);
}

/// SPEC §3 ▲: the limit applies to data and metadata together.
pub async fn the_size_limit_counts_data_and_metadata_together(env: &Env) {
    let store = limited(env, 10_000);
    let owner = env.owner(&store, None).await;
    let h = env.handle(&store, owner, Some(InstanceId::new()));
    let data = Save::data(bag([("half", noise(6_000, 8))]));
    store.execute(&h, data, T).await.expect("data alone fits");
    let mut meta = changes(vec![set("half", noise(6_000, 9))]);
    let result = store.execute(&h, meta.clone(), T).await;
    assert_err!(result, StoreError::PayloadTooLarge { size, limit: 10_000 } if size > 12_000);
    // With smaller data the same metadata fits.
    meta.data = Some(bag([("small", 1i64)]));
    store
        .execute(&h, meta, T)
        .await
        .expect("fits with smaller data");
}

/// SPEC §3 ▲: the default limit is 16 MiB.
pub async fn saves_over_16_mib_fail_by_default(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let h = env.handle(&store, owner, Some(InstanceId::new()));
    let huge = Save::data(bag([("big", noise(16 * 1024 * 1024 + 1, 10))]));
    let result = store.execute(&h, huge, T).await;
    assert_err!(result, StoreError::PayloadTooLarge { limit, .. } if limit == 16 * 1024 * 1024);
    let mib = Save::data(bag([("big", noise(1024 * 1024, 11))]));
    store.execute(&h, mib, T).await.expect("1 MiB fits");
}
