//! Retention (SPEC §12 ▲): the service purges completed instances last changed longer ago than
//! the store's retention — and nothing else — on the memory and SQLite providers. Time moves
//! through a manual clock.

// Test code (clippy's allow-unwrap-in-tests covers #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use instore::{
    ExecutionStatus, InstanceFilter, InstanceStore, ManualClock, MemoryProvider, PropertyBag,
    Providers, Save, SharedClock, StoreSettings,
};
use instore_management::{ManagementService, ManagementSettings};

use support::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn store(providers: &Providers) -> InstanceStore {
    let settings = StoreSettings {
        retention: Some(7 * DAY),
        ..StoreSettings::default()
    };
    InstanceStore::builder(providers.persistence.clone())
        .settings(settings)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_completed_instances_past_retention_are_purged() {
    let clock = ManualClock::starting_now();
    let providers = Providers::of(MemoryProvider::with_clock(Arc::new(clock.clone())));
    purges_completed_instances_past_retention(store(&providers), providers, clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_completed_instances_past_retention_are_purged() {
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let shared: SharedClock = Arc::new(clock.clone());
    let provider = instore_sqlite::SqliteProvider::open_with(
        dir.path().join("instore.db"),
        instore_sqlite::SqliteOptions::default(),
        shared,
    )
    .await
    .unwrap();
    let providers = Providers::of(provider);
    purges_completed_instances_past_retention(store(&providers), providers, clock).await;
}

async fn purges_completed_instances_past_retention(
    store: InstanceStore,
    providers: Providers,
    clock: ManualClock,
) {
    let old_host = host(&store, "orders", PropertyBag::new()).await;
    let completed = Save::data(data())
        .with_status(ExecutionStatus::Closed)
        .and_complete();
    let old: Vec<_> = completed_instances(&store, old_host, completed.clone(), 3).await;
    let (old_running, _) = instance(&store, old_host, Save::data(data()).and_unlock()).await;
    delete_owner(&store, old_host).await;

    clock.advance(8 * DAY);
    let new_host = host(&store, "orders", PropertyBag::new()).await;
    let (recent, _) = instance(&store, new_host, completed).await;

    let settings = ManagementSettings {
        purge_batch: 2, // several batches in one pass
        ..ManagementSettings::default()
    };
    let service = ManagementService::for_providers(store.clone(), &providers)
        .settings(settings)
        .build()
        .unwrap();
    let stats = service.stats();
    let running = start(service);
    eventually("the old completed instances are purged", || async {
        stats.snapshot().purged == 3
    })
    .await;
    running.stop().await;

    let all = providers.query.count(&InstanceFilter::all()).await.unwrap();
    assert_eq!(
        all, 2,
        "the recent completed one and the old running one stay"
    );
    for id in old {
        let filter = InstanceFilter {
            ids: vec![id],
            ..InstanceFilter::default()
        };
        assert_eq!(providers.query.count(&filter).await.unwrap(), 0);
    }
    for id in [old_running, recent] {
        let filter = InstanceFilter {
            ids: vec![id],
            ..InstanceFilter::default()
        };
        assert_eq!(providers.query.count(&filter).await.unwrap(), 1);
    }
}

/// `n` instances saved with `save`, one after another.
async fn completed_instances(
    store: &InstanceStore,
    owner: instore::OwnerId,
    save: Save,
    n: usize,
) -> Vec<instore::InstanceId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(instance(store, owner, save.clone()).await.0);
    }
    ids
}
