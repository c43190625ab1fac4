//! Operations that run at the same time on one store never fail each other: PostgreSQL's row
//! locks make concurrent transactions wait, and a wait in the wrong order is a deadlock that
//! aborts one of them. These cases run many of one operation at once where their row sets
//! overlap.

mod support;

use std::time::Duration;

use instore::{bag, ManualClock, NewOwner, PersistenceProvider};

fn new_owner(lease: Duration) -> NewOwner {
    NewOwner {
        host_type: Some("orders".into()),
        metadata: bag([("host", "x")]),
        lease,
        machine: "test".into(),
    }
}

/// Every `create_owner` and `delete_owner` also removes expired owners that hold no locks; many
/// at once over the same expired owners must not deadlock (regression: the model test saw
/// `CreateOwner` fail with a transient storage error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_owner_registrations_clean_up_expired_owners_without_deadlock() {
    let clock = ManualClock::starting_now();
    let (provider, _guard) = support::provider(clock.clone()).await;
    for round in 0..20 {
        let mut expired = Vec::new();
        for _ in 0..40 {
            let owner = provider
                .create_owner(new_owner(Duration::from_secs(1)))
                .await
                .expect("an owner");
            expired.push(owner.id);
        }
        clock.advance(Duration::from_secs(2));
        // Lost hosts being deleted (as a runtime does when it notices) while their replacements
        // register: each transaction removes the same expired owners.
        let mut tasks = Vec::new();
        for (i, lost) in expired.into_iter().enumerate().take(32) {
            let p = provider.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    p.delete_owner(lost).await
                } else {
                    p.create_owner(new_owner(Duration::from_secs(60)))
                        .await
                        .map(|_| ())
                }
            }));
        }
        for task in tasks {
            let result = task.await.expect("task");
            assert!(result.is_ok(), "round {round}: {result:?}");
        }
    }
}
