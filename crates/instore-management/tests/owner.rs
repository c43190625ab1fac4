//! The service's own owner: registered once, without a host type, never the store's default
//! owner; when it is lost the service carries on with the store's replacement
//! (`auto_recover_owner`) or with one it registers itself. Time moves through a manual clock.

// Test code (clippy's allow-unwrap-in-tests covers #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use instore::{
    ControlCommand, InstanceStore, ManualClock, MemoryProvider, OwnerInfo, PropertyBag, Providers,
    Save, StoreSettings,
};
use instore_management::{ManagementService, ROLE};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_owner_is_replaced_by_the_stores_recovered_one() {
    the_service_carries_on_after_losing_its_owner(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_recovery_the_service_registers_a_new_owner() {
    the_service_carries_on_after_losing_its_owner(false).await;
}

/// The service's owners that are alive now.
async fn live_service_owners(store: &InstanceStore) -> Vec<OwnerInfo> {
    let now = store.clock().now();
    let owners = store.provider().owners().await.unwrap();
    owners
        .into_iter()
        .filter(|o| o.metadata.contains_key(ROLE) && o.lease_expires_at > now)
        .collect()
}

async fn the_service_carries_on_after_losing_its_owner(auto_recover_owner: bool) {
    let clock = ManualClock::starting_now();
    let providers = Providers::of(MemoryProvider::with_clock(Arc::new(clock.clone())));
    let settings = StoreSettings {
        auto_recover_owner,
        ..StoreSettings::default()
    };
    let store = InstanceStore::builder(providers.persistence.clone())
        .settings(settings)
        .build()
        .unwrap();
    let host = host(&store, "orders", PropertyBag::new()).await;
    let (id, _) = instance(&store, host, Save::data(data()).and_unlock()).await;

    let service = ManagementService::builder(store.clone(), providers.control.clone())
        .settings(quick())
        .build()
        .unwrap();
    let stats = service.stats();
    let nudge = service.nudge();
    let running = start(service);

    let suspend = ControlCommand::Suspend {
        reason: "audit".into(),
    };
    providers.control.enqueue(id, suspend).await.unwrap();
    nudge.nudge();
    eventually("suspended", || async {
        info(&providers, id).await.suspension.is_some()
    })
    .await;
    let first = live_service_owners(&store).await;
    assert_eq!(first.len(), 1, "one owner: {first:?}");
    assert_eq!(first[0].host_type, None, "the service runs nothing");
    assert_eq!(store.default_owner(), Some(host));

    // Time jumps past every lease without a renewal: every owner of the store is lost.
    clock.advance(Duration::from_secs(120));
    if auto_recover_owner {
        eventually("the store registers a replacement", || async {
            live_service_owners(&store).await.len() == 1
        })
        .await;
    }

    providers
        .control
        .enqueue(id, ControlCommand::Resume)
        .await
        .unwrap();
    nudge.nudge();
    // The first attempt may still meet the lost owner; its retry delay runs on the store's
    // clock, so keep time moving.
    eventually("resumed", || async {
        clock.advance(Duration::from_millis(50));
        info(&providers, id).await.suspension.is_none()
    })
    .await;
    let now_live = live_service_owners(&store).await;
    assert_eq!(now_live.len(), 1, "exactly one live owner: {now_live:?}");
    assert_ne!(now_live[0].id, first[0].id);
    let s = stats.snapshot();
    assert_eq!(s.completed, 2);
    assert!(
        s.failed <= 1,
        "at most the attempt that met the lost owner: {s:?}"
    );
    running.stop().await;
}
