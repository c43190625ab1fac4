//! Invalid input never panics, and every validation error says what is wrong and where
//! (SPEC §3, §6; issue acceptance 6). Arbitrary commands — empty names, nil keys, duplicate keys,
//! contradictory flags — are executed on handles in every binding state.

use std::time::Duration;

use instore::{
    Command, CreateOwner, InstanceId, InstanceStore, InstanceValue, KeyId, Load, LoadByKey,
    MemoryProvider, MetadataChange, NewKey, PropertyBag, Save, StoreError, Uuid,
};
use proptest::prelude::*;

const T: Duration = Duration::from_secs(5);

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_owned()),
        Just("orders:total".to_owned()),
        "[a-z:]{0,6}"
    ]
}

fn a_bag() -> impl Strategy<Value = PropertyBag> {
    prop::collection::btree_map(name(), any::<i64>().prop_map(InstanceValue::new), 0..3)
}

fn key() -> impl Strategy<Value = KeyId> {
    prop_oneof![
        Just(KeyId::from_uuid(Uuid::nil())),
        Just(KeyId::from_uuid(Uuid::from_u128(1))),
        Just(KeyId::from_uuid(Uuid::from_u128(2)))
    ]
}

fn new_keys() -> impl Strategy<Value = Vec<NewKey>> {
    prop::collection::vec(
        (key(), a_bag()).prop_map(|(key, metadata)| NewKey { key, metadata }),
        0..3,
    )
}

fn save() -> impl Strategy<Value = Command> {
    let change = prop_oneof![
        Just(MetadataChange::Deleted),
        Just(MetadataChange::Set(1i64.into()))
    ];
    (
        prop::option::of(a_bag()),
        prop::collection::vec((name(), change), 0..3),
        new_keys(),
        prop::collection::vec(key(), 0..3),
        prop::collection::vec(key(), 0..3),
        any::<(bool, bool)>(),
        prop::collection::vec(name(), 0..2),
    )
        .prop_map(
            |(
                data,
                metadata_changes,
                keys_to_associate,
                keys_to_complete,
                keys_to_free,
                (complete, unlock),
                bookmarks,
            )| {
                Command::Save(Save {
                    data,
                    metadata_changes,
                    keys_to_associate,
                    keys_to_complete,
                    keys_to_free,
                    bookmarks,
                    complete,
                    unlock,
                    ..Save::default()
                })
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            prop::option::of(name()),
            a_bag(),
            prop::option::of(0u64..3000)
        )
            .prop_map(|(host_type, metadata, lease)| {
                Command::CreateOwner(CreateOwner {
                    host_type,
                    metadata,
                    lease: lease.map(Duration::from_millis),
                })
            }),
        any::<(bool, bool)>().prop_map(|(a, s)| Command::Load(Load {
            accept_uninitialized: a,
            allow_suspended: s
        })),
        (
            key(),
            any::<bool>(),
            prop::option::of(prop_oneof![Just(Uuid::nil()), Just(Uuid::from_u128(9))]),
            new_keys()
        )
            .prop_map(|(key, accept, id, keys)| {
                Command::LoadByKey(LoadByKey {
                    key,
                    accept_uninitialized: accept,
                    create_with_id: id.map(InstanceId::from_uuid),
                    keys_to_associate: keys,
                    allow_suspended: false,
                })
            }),
        save(),
        Just(Command::TryLoadRunnable),
        Just(Command::QueryActivatable),
        Just(Command::DeleteOwner),
    ]
}

/// What a validation message must mention: the command, or the bag, at fault.
const SUBJECTS: &[&str] = &[
    "CreateOwner",
    "Load",
    "Save",
    "TryLoadRunnable",
    "QueryActivatable",
    "DeleteOwner",
    "instance data",
    "owner metadata",
    "key metadata",
    "metadata changes",
    "owner",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_never_panic_and_invalid_ones_say_why(
        commands in prop::collection::vec((0usize..3, command()), 1..12)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = InstanceStore::builder(MemoryProvider::new()).build().unwrap();
            let setup = store.create_handle();
            store.execute(&setup, CreateOwner::host_type("h"), T).await.unwrap();
            let owner = setup.owner();
            // Handles in each binding state: unbound, owner only, owner + instance.
            let handles = [
                store.create_handle_for(None, None),
                store.create_handle_for(owner, None),
                store.create_handle_for(owner, Some(InstanceId::from_uuid(Uuid::from_u128(7)))),
            ];
            for (i, command) in commands {
                let shown = format!("{command:?}");
                if let Err(StoreError::Invalid { what }) = store.execute(&handles[i], command, T).await {
                    assert!(
                        SUBJECTS.iter().any(|s| what.contains(s)),
                        "message {what:?} does not say what is wrong, for {shown}"
                    );
                }
            }
        });
    }
}

#[tokio::test]
async fn an_empty_name_in_key_metadata_names_the_key_and_the_bag() {
    let store = InstanceStore::builder(MemoryProvider::new())
        .build()
        .unwrap();
    let owner = store.create_handle();
    store
        .execute(&owner, CreateOwner::default(), T)
        .await
        .unwrap();
    let key = KeyId::from_uuid(Uuid::from_u128(5));
    let handle = store.create_handle();
    let mut load = LoadByKey::or_create(KeyId::new());
    load.keys_to_associate = vec![NewKey {
        key,
        metadata: instore::bag([("", 1i64)]),
    }];
    let err = store
        .execute(&handle, load, T)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("key metadata")
            && err.contains(&key.to_string())
            && err.contains("empty name"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_name_in_instance_data_is_named() {
    let store = InstanceStore::builder(MemoryProvider::new())
        .build()
        .unwrap();
    let owner = store.create_handle();
    store
        .execute(&owner, CreateOwner::default(), T)
        .await
        .unwrap();
    let handle = store.create_handle_for(owner.owner(), Some(InstanceId::new()));
    let err = store
        .execute(&handle, Save::data(instore::bag([("", 1i64)])), T)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("instance data") && err.contains("empty name"),
        "{err}"
    );
}
