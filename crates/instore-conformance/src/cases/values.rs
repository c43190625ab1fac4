//! SPEC §3: values, options (write-only, optional), bags, change bags, validation, size limit.
//!
//! | rule (SPEC §3) | cases |
//! |---|---|
//! | every kind of value round-trips exactly (null, bool, int, float incl. NaN and -0.0, string, bytes, timestamp, UUID, duration, JSON) | `every_kind_of_value_round_trips_exactly`, `values_round_trip_in_metadata_and_key_metadata`, `owner_metadata_round_trips_without_its_write_only_values` |
//! | `WRITE_ONLY`: persisted (and counted in the size) but never loaded back into a host's view | `write_only_values_are_persisted_but_not_loaded_back`, `owner_metadata_round_trips_without_its_write_only_values`, `write_only_values_count_toward_the_size_limit` |
//! | `OPTIONAL`: may be dropped, never makes a command fail | `optional_values_are_dropped_rather_than_failing_a_save` |
//! | an initial bag or a change bag with an empty name is rejected, naming the bag | `empty_names_are_rejected_naming_the_bag` |
//! | a change bag's `Deleted` removes a name; change bags apply in order | `change_bags_delete_metadata_and_apply_in_order` |
//! | large bags are compressed; the encoding is recorded per row | `large_values_round_trip`, `rows_written_under_one_encoding_setting_load_under_another` |
//! | ▲ `PayloadTooLarge { size, limit }` (default 16 MiB, data + metadata) and nothing changes | `payload_too_large_changes_nothing`, `an_acquiring_save_that_is_too_large_creates_nothing`, `the_size_limit_counts_data_and_metadata_together`, `saves_over_16_mib_fail_by_default` |
//!
//! An initial bag holding `Deleted` or a missing value cannot be expressed in the Rust API (a
//! [`instore::PropertyBag`] holds values only); those are checked where bags are parsed from
//! JSON. "Data is replaced as a whole": `save::data_is_replaced_whole_by_each_save_with_data`.

use std::time::Duration;

use instore::{
    bag, CreateOwner, EncodingSettings, InstanceId, InstanceSnapshot, InstanceValue, KeyId, Load,
    LoadByKey, LoadGuards, LoadRequest, LoadTarget, MetadataChange, NewKey, OwnerId, PropertyBag,
    Save, StoreError, Timestamp, Uuid, Value,
};

use crate::harness::*;

/// The size-limit cases (the ▲ row, and the limit's effect on `WRITE_ONLY` and `OPTIONAL` values).
mod size;
pub use size::*;

/// A metadata-only save applying `changes`.
fn changes(changes: Vec<(String, MetadataChange)>) -> Save {
    Save {
        metadata_changes: changes,
        ..Save::default()
    }
}

/// One value of every kind, with the edge cases naive storage breaks: NaN, -0.0, extreme
/// integers, empty and non-ASCII text, NUL, sub-second durations, a pre-1970 timestamp.
fn every_kind() -> PropertyBag {
    bag([
        ("v:null", InstanceValue::new(Value::Null)),
        ("v:true", true.into()),
        ("v:false", false.into()),
        ("v:int-min", i64::MIN.into()),
        ("v:int-max", i64::MAX.into()),
        ("v:float", 0.1f64.into()),
        ("v:neg-zero", (-0.0f64).into()),
        ("v:nan", f64::NAN.into()),
        ("v:inf", f64::NEG_INFINITY.into()),
        ("v:string", "héllo wörld ✓ \u{0}".into()),
        ("v:empty-string", "".into()),
        ("v:bytes", vec![0u8, 255, 7, 0].into()),
        ("v:empty-bytes", Vec::<u8>::new().into()),
        ("v:ts", Timestamp::from_micros(1_700_000_000_123_457).into()),
        (
            "v:ts-before-1970",
            Timestamp::from_micros(-123_456_789_012).into(),
        ),
        (
            "v:uuid",
            Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).into(),
        ),
        ("v:duration", Duration::new(3, 999_999_999).into()),
        ("v:duration-max", Duration::MAX.into()),
        (
            "v:json",
            serde_json::json!({"a": [1, 2.5, null, "x", {"b": true}], "big": u64::MAX}).into(),
        ),
        ("orders:total", 42i64.into()),
    ])
}

/// Asserts two bags are equal, floats bit for bit (so NaN equals NaN and -0.0 differs from 0.0).
fn assert_same_bag(what: &str, got: &PropertyBag, want: &PropertyBag) {
    let names = |b: &PropertyBag| b.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the names differ");
    for (name, w) in want {
        let g = &got[name];
        assert_eq!(g.options, w.options, "{what}: options of {name}");
        let same = match (&g.value, &w.value) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        };
        assert!(
            same,
            "{what}: {name} came back as {:?}, was saved as {:?}",
            g.value, w.value
        );
    }
}

/// Pseudo-random bytes (xorshift), which no compressor can shrink.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    };
    (0..len).map(|_| next()).collect()
}

/// What the provider stores for an instance `owner` holds at `version`, write-only values
/// included. A lock-bound re-read changes nothing.
async fn stored(env: &Env, owner: OwnerId, instance: InstanceId, version: u64) -> InstanceSnapshot {
    let target = LoadTarget::Id {
        instance,
        accept_uninitialized: false,
    };
    let guards = LoadGuards::default();
    let request = LoadRequest {
        target,
        held_version: Some(version),
        busy: Vec::new(),
        guards,
    };
    env.provider
        .load(owner, request)
        .await
        .expect("the holder re-reads its instance")
}

/// SPEC §3: instance data of every kind of value comes back exactly, through another host.
pub async fn every_kind_of_value_round_trips_exactly(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let save = Save::data(every_kind()).and_unlock();
    let saved = ok(&store, owner, Some(id), save).await;
    assert_same_bag("the save's view", &saved.data, &every_kind());

    // Another host reads it from storage, not from the first store's memory.
    let (other, reader) = other_host(env, None).await;
    let view = ok(&other, reader, Some(id), Load::default()).await;
    assert_same_bag("reloaded data", &view.data, &every_kind());
}

/// SPEC §3: metadata and key metadata keep every kind of value exactly as well.
pub async fn values_round_trip_in_metadata_and_key_metadata(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let mut save = Save::data(bag([("a", 1i64)])).and_unlock();
    save.metadata_changes = every_kind().into_iter().map(|(k, v)| set(&k, v)).collect();
    save.keys_to_associate = vec![NewKey {
        key,
        metadata: every_kind(),
    }];
    ok(&store, owner, Some(id), save).await;

    let (other, reader) = other_host(env, None).await;
    let view = ok(&other, reader, None, LoadByKey::new(key)).await;
    assert_eq!(view.instance, Some(id));
    assert_same_bag("metadata", &view.metadata, &every_kind());
    assert_same_bag("key metadata", &view.keys[&key].metadata, &every_kind());
}

/// SPEC §3: owner metadata round-trips; other owners see it without its write-only values.
pub async fn owner_metadata_round_trips_without_its_write_only_values(env: &Env) {
    let store = env.store();
    let mut metadata = every_kind();
    metadata.insert("host:secret".into(), InstanceValue::write_only("token"));
    let create = CreateOwner {
        metadata,
        ..CreateOwner::default()
    };
    let holder = env.owner_with(&store, create).await;
    let id = InstanceId::new();
    let held = env.handle(&store, holder, Some(id));
    let save = Save::data(bag([("a", 1i64)]));
    store
        .execute(&held, save, T)
        .await
        .expect("save, keep the lock");

    let (other, reader) = other_host(env, None).await;
    let result = run(&other, reader, Some(id), Load::default()).await;
    let Err(StoreError::InstanceLocked {
        owner,
        owner_metadata,
        ..
    }) = result
    else {
        panic!("expected InstanceLocked, got {result:?}")
    };
    assert_eq!(owner, holder);
    assert_same_bag("the holder's metadata", &owner_metadata, &every_kind());
}

/// SPEC §3 `WRITE_ONLY`: stored (the provider keeps it, and it survives later saves) but left
/// out of every view: data, metadata and key metadata.
pub async fn write_only_values_are_persisted_but_not_loaded_back(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let mut save = Save::data(bag([
        ("orders:total", InstanceValue::new(5i64)),
        ("orders:card", InstanceValue::write_only("4111")),
    ]));
    let audit = InstanceValue::write_only("by alice");
    save.metadata_changes = vec![set("meta:site", "eu"), set("meta:audit", audit.clone())];
    let hidden = InstanceValue::write_only(1i64);
    let metadata = bag([
        ("key:name", InstanceValue::new("order-7")),
        ("key:hidden", hidden.clone()),
    ]);
    save.keys_to_associate = vec![NewKey { key, metadata }];
    let h = env.handle(&store, owner, Some(id));
    let view = store.execute(&h, save, T).await.expect("save");
    let (data, meta) = (bag([("orders:total", 5i64)]), bag([("meta:site", "eu")]));
    let key_meta = bag([("key:name", "order-7")]);
    assert_eq!(
        view.data, data,
        "the save's view leaves write-only data out"
    );
    assert_eq!(view.metadata, meta, "... and write-only metadata");
    assert_eq!(
        view.keys[&key].metadata, key_meta,
        "... and write-only key metadata"
    );

    // Persisted: the provider has them.
    let snap = stored(env, owner, id, view.lock_version.expect("locked")).await;
    assert_eq!(snap.data["orders:card"], InstanceValue::write_only("4111"));
    assert_eq!(snap.metadata["meta:audit"], audit);
    assert_eq!(snap.keys[&key].metadata["key:hidden"], hidden);

    // A later metadata-only save keeps them (the host never saw them, so cannot resend them).
    let touch = changes(vec![set("meta:n", 1i64)]).and_unlock();
    store
        .execute(&h, touch, T)
        .await
        .expect("metadata-only save");

    let (other, reader) = other_host(env, None).await;
    // Keep the handle: dropping it would release the lock the raw re-read below relies on.
    let reading = env.handle(&other, reader, Some(id));
    let view = ok_on(&other, &reading, Load::default()).await;
    assert_eq!(view.data, data, "reloaded data has no write-only values");
    let meta = bag([
        ("meta:n", InstanceValue::new(1i64)),
        ("meta:site", "eu".into()),
    ]);
    assert_eq!(view.metadata, meta);
    assert_eq!(view.keys[&key].metadata, key_meta);
    let snap = stored(env, reader, id, view.lock_version.expect("locked")).await;
    let persisted =
        snap.data.contains_key("orders:card") && snap.metadata.contains_key("meta:audit");
    assert!(persisted, "still persisted: {snap:?}");
}

/// SPEC §3: an empty name in instance data, owner metadata, key metadata or metadata changes is
/// `Invalid`, naming the bag, and changes nothing.
pub async fn empty_names_are_rejected_naming_the_bag(env: &Env) {
    let store = env.store();
    let bad_owner = CreateOwner {
        metadata: bag([("", 1i64)]),
        ..CreateOwner::default()
    };
    let result = store
        .execute(&store.create_handle_for(None, None), bad_owner, T)
        .await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("owner metadata"));

    let owner = env.owner(&store, None).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let h = env.handle(&store, owner, Some(id));
    store
        .execute(&h, Save::data(bag([("a", 1i64)])), T)
        .await
        .expect("save");
    let save = Save::data(bag([("", 2i64), ("a", 2i64)]));
    let result = store.execute(&h, save, T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("instance data"));
    for change in [MetadataChange::Set(1i64.into()), MetadataChange::Deleted] {
        let mut save = Save::data(bag([("a", 3i64)]));
        save.metadata_changes = vec![("".into(), change)];
        let result = store.execute(&h, save, T).await;
        assert_err!(result, StoreError::Invalid { what } if what.contains("metadata changes"));
    }
    let bad_key = || {
        vec![NewKey {
            key,
            metadata: bag([("", 1i64)]),
        }]
    };
    let mut save = Save::data(bag([("a", 4i64)]));
    save.keys_to_associate = bad_key();
    let result = store.execute(&h, save, T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("key metadata"));
    let mut by_key = LoadByKey::or_create(KeyId::new());
    by_key.keys_to_associate = bad_key();
    let result = run(&store, owner, None, by_key).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("key metadata"));

    // Nothing changed: the handle still holds the instance with its first data, no key.
    let view = store
        .execute(&h, Load::default(), T)
        .await
        .expect("the lock is still held");
    assert_eq!(view.data, bag([("a", 1i64)]));
    assert!(view.metadata.is_empty() && view.keys.is_empty(), "{view:?}");
    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
}

/// SPEC §3: `Deleted` removes a name; change bags apply in order; metadata persists across saves
/// that do not change it.
pub async fn change_bags_delete_metadata_and_apply_in_order(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let h = env.handle(&store, owner, Some(id));
    let deleted = |name: &str| (name.to_owned(), MetadataChange::Deleted);
    let mut first = Save::data(bag([("d", 0i64)]));
    first.metadata_changes = vec![set("a", 1i64), set("b", 2i64), set("c", 3i64)];
    let view = store.execute(&h, first, T).await.expect("save");
    assert_eq!(view.metadata, bag([("a", 1i64), ("b", 2), ("c", 3)]));

    let second = changes(vec![
        deleted("a"),
        set("b", 20i64),
        set("c", 30i64),
        deleted("c"),
        deleted("e"),
        set("e", 5i64),
        deleted("never-there"),
    ]);
    let view = store
        .execute(&h, second, T)
        .await
        .expect("metadata-only save");
    let want = bag([("b", 20i64), ("e", 5)]);
    assert_eq!(
        view.metadata, want,
        "a and c deleted, b replaced, e set after its deletion"
    );

    let save = Save::data(bag([("d", 1i64)])).and_unlock();
    store
        .execute(&h, save, T)
        .await
        .expect("save without changes");
    let view = ok(&store, owner, Some(id), Load::default()).await;
    assert_eq!(
        view.metadata, want,
        "a save without metadata changes keeps the metadata"
    );
}

/// SPEC §3: large (compressed) and incompressible values round-trip exactly.
pub async fn large_values_round_trip(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let data = bag([
        ("text", InstanceValue::new("order line ".repeat(100_000))),
        ("noise", InstanceValue::new(noise(300_000, 4))),
        (
            "json",
            InstanceValue::new(serde_json::json!({"lines": vec!["x"; 10_000]})),
        ),
    ]);
    let mut save = Save::data(data.clone()).and_unlock();
    save.metadata_changes = vec![set("meta:big", "m".repeat(50_000))];
    ok(&store, owner, Some(id), save).await;
    let (other, reader) = other_host(env, None).await;
    let view = ok(&other, reader, Some(id), Load::default()).await;
    assert_same_bag("large data", &view.data, &data);
    assert_eq!(view.metadata, bag([("meta:big", "m".repeat(50_000))]));
}

/// SPEC §3: the encoding is recorded per row, so a store that never compresses reads rows a
/// compressing store wrote, and the other way round.
pub async fn rows_written_under_one_encoding_setting_load_under_another(env: &Env) {
    let compressing = env.store();
    let mut settings = env.settings();
    settings.encoding = EncodingSettings {
        compress_above_bytes: usize::MAX,
        zstd_level: 3,
    };
    let plain = env.store_with(settings, Vec::new()).0;
    let data = bag([("text", "compress me ".repeat(20_000))]);
    let mut written = Vec::new();
    for store in [&compressing, &plain] {
        let owner = env.owner(store, None).await;
        let id = InstanceId::new();
        ok(
            store,
            owner,
            Some(id),
            Save::data(data.clone()).and_unlock(),
        )
        .await;
        written.push(id);
    }
    for (store, id) in [(&plain, written[0]), (&compressing, written[1])] {
        let owner = store.default_owner().expect("an owner");
        let view = ok(store, owner, Some(id), Load::default()).await;
        assert_eq!(view.data, data, "read under the other setting");
    }
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! values_cases {
    ($make:path) => {
        $crate::__case!($make, values::every_kind_of_value_round_trips_exactly);
        $crate::__case!(
            $make,
            values::values_round_trip_in_metadata_and_key_metadata
        );
        $crate::__case!(
            $make,
            values::owner_metadata_round_trips_without_its_write_only_values
        );
        $crate::__case!(
            $make,
            values::write_only_values_are_persisted_but_not_loaded_back
        );
        $crate::__case!($make, values::write_only_values_count_toward_the_size_limit);
        $crate::__case!(
            $make,
            values::optional_values_are_dropped_rather_than_failing_a_save
        );
        $crate::__case!($make, values::empty_names_are_rejected_naming_the_bag);
        $crate::__case!(
            $make,
            values::change_bags_delete_metadata_and_apply_in_order
        );
        $crate::__case!($make, values::large_values_round_trip);
        $crate::__case!(
            $make,
            values::rows_written_under_one_encoding_setting_load_under_another
        );
        $crate::__case!($make, values::payload_too_large_changes_nothing);
        $crate::__case!(
            $make,
            values::an_acquiring_save_that_is_too_large_creates_nothing
        );
        $crate::__case!(
            $make,
            values::the_size_limit_counts_data_and_metadata_together
        );
        $crate::__case!($make, values::saves_over_16_mib_fail_by_default);
    };
}
