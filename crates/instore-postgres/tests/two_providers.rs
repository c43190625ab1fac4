//! Two providers on one schema are two hosts' views of one store: a lock taken through one is
//! seen by the other, and a wake-up pushed by one reaches the other (LISTEN/NOTIFY, not polling).

mod support;

use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, ExecutionStatus, InstanceId, LoadGuards, LoadRequest, LoadTarget, NewOwner,
    PersistenceProvider, Save, SaveRequest, SaveRules, StoreError, StoreSettings,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};

async fn open(schema: &str) -> Arc<PgProvider> {
    PgProvider::open_with(
        &support::store_url(schema),
        PgOptions {
            pool_size: 2,
            ..PgOptions::default()
        },
        PgClock::Server,
    )
    .await
    .expect("open")
}

fn owner() -> NewOwner {
    NewOwner {
        host_type: Some("orders".into()),
        metadata: bag([("host", "a")]),
        lease: Duration::from_secs(60),
        machine: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_wake_ups_cross_between_providers_of_one_store() {
    let schema = support::fresh_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let a = open(&schema).await;
    let b = open(&schema).await;
    let owner_a = a.create_owner(owner()).await.expect("owner a").id;
    let owner_b = b.create_owner(owner()).await.expect("owner b").id;

    let id = InstanceId::new();
    let rules = SaveRules {
        max_payload_bytes: 1 << 20,
        encoding: Default::default(),
        completion: StoreSettings::default().completion,
    };
    let executing = Save {
        status: ExecutionStatus::Executing,
        ..Save::data(bag([("step", 1i64)]))
    };
    let saved = a
        .save(
            owner_a,
            SaveRequest {
                instance: id,
                held_version: None,
                busy: Vec::new(),
                save: executing,
                rules,
                promoted: None,
            },
        )
        .await
        .expect("a saves and holds the lock");

    let load = LoadRequest {
        target: LoadTarget::Id {
            instance: id,
            accept_uninitialized: false,
        },
        held_version: None,
        busy: Vec::new(),
        guards: LoadGuards::default(),
    };
    let refused = b.load(owner_b, load.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::InstanceLocked { owner, .. }) if owner == owner_a),
        "{refused:?}"
    );

    // Wait until b's listener is listening (its first connect moves the counter), then have a
    // release the executing instance: b hears of it without asking.
    let mut wake = b.wake_ups();
    tokio::time::timeout(Duration::from_secs(10), wake.wait_for(|n| *n > 0))
        .await
        .expect("b's listener connects")
        .expect("watch");
    let seen = *wake.borrow_and_update();
    a.unlock(owner_a, id).await.expect("unlock");
    tokio::time::timeout(Duration::from_secs(10), wake.wait_for(|n| *n > seen))
        .await
        .expect("b is woken by a's unlock")
        .expect("watch");

    let taken = b.load(owner_b, load).await.expect("b takes it now");
    assert_eq!(
        taken.lock_version,
        saved.lock_version + 1,
        "another owner's lock is a new version"
    );
}
