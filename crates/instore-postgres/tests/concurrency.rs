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

fn rules() -> instore::SaveRules {
    instore::SaveRules {
        max_payload_bytes: 1 << 20,
        encoding: Default::default(),
        completion: instore::StoreSettings::default().completion,
    }
}

/// Saves `id` as executing and unlocked: runnable at once.
async fn runnable(p: &dyn PersistenceProvider, owner: instore::OwnerId, id: instore::InstanceId) {
    let save = instore::Save {
        status: instore::ExecutionStatus::Executing,
        ..instore::Save::data(bag([("n", 1i64)]))
    }
    .and_unlock();
    p.save(
        owner,
        instore::SaveRequest {
            instance: id,
            held_version: None,
            busy: Vec::new(),
            save,
            rules: rules(),
            promoted: None,
        },
    )
    .await
    .expect("save");
}

fn claim() -> instore::RunnableRequest {
    instore::RunnableRequest {
        host_type: "orders".into(),
        guards: Default::default(),
        skip: Vec::new(),
    }
}

/// A claim finds a runnable instance even when the oldest ones (more than one batch of
/// candidates) are row-locked by other transactions at that moment (SKIP LOCKED skips them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_looks_past_a_full_batch_of_rows_others_are_claiming() {
    let clock = ManualClock::starting_now();
    let (provider, guard) = support::provider(clock.clone()).await;
    let owner = provider
        .create_owner(new_owner(Duration::from_secs(60)))
        .await
        .expect("owner")
        .id;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = instore::InstanceId::new();
        runnable(provider.as_ref(), owner, id).await;
        clock.advance(Duration::from_millis(1));
        ids.push(id);
    }
    // Another session holds the 35 oldest rows.
    let mut admin = support::admin().await;
    let tx = admin.transaction().await.expect("begin");
    let held: Vec<uuid::Uuid> = ids[..35].iter().map(|i| i.as_uuid()).collect();
    tx.execute(
        &format!(
            "select 1 from \"{}\".instances where id = any($1) for update",
            guard.0
        ),
        &[&held],
    )
    .await
    .expect("lock rows");
    let other = provider
        .create_owner(new_owner(Duration::from_secs(60)))
        .await
        .expect("owner")
        .id;
    let found = provider
        .try_load_runnable(other, claim())
        .await
        .expect("claim");
    assert_eq!(found.map(|s| s.instance), Some(ids[35]));
    tx.rollback().await.expect("rollback");
}

/// An instance whose lock names an owner that no longer exists is runnable (as on every
/// provider: a missing holder is runnable since the epoch), found by claims, `next_runnable`
/// and `activatable` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_locked_by_a_vanished_owner_is_runnable() {
    let clock = ManualClock::starting_now();
    let (provider, guard) = support::provider(clock.clone()).await;
    let owner = provider
        .create_owner(new_owner(Duration::from_secs(60)))
        .await
        .expect("owner")
        .id;
    let id = instore::InstanceId::new();
    runnable(provider.as_ref(), owner, id).await;
    // What a clean-up racing an uncommitted claim leaves behind.
    let admin = support::admin().await;
    admin
        .execute(
            &format!(
                "update \"{}\".instances set lock_owner = $1, ready_at = null where id = $2",
                guard.0
            ),
            &[&uuid::Uuid::new_v4(), &id.as_uuid()],
        )
        .await
        .expect("orphan the lock");
    assert!(provider
        .next_runnable("orders")
        .await
        .expect("next")
        .is_some());
    provider.delete_owner(owner).await.expect("delete");
    let activatable = provider.activatable().await.expect("activatable");
    assert_eq!(activatable.len(), 1, "{activatable:?}");
    let other = provider
        .create_owner(new_owner(Duration::from_secs(60)))
        .await
        .expect("owner")
        .id;
    let found = provider
        .try_load_runnable(other, claim())
        .await
        .expect("claim");
    assert_eq!(found.map(|s| s.instance), Some(id));
}

/// Owners racing to create the same new instance: one creates it, the others are told it is
/// locked — never a raw unique-violation storage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creators_of_one_instance_id_get_rule_answers() {
    let clock = ManualClock::starting_now();
    let (provider, _guard) = support::provider(clock.clone()).await;
    for _ in 0..20 {
        let id = instore::InstanceId::new();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let p = provider.clone();
            tasks.push(tokio::spawn(async move {
                let owner = p.create_owner(new_owner(Duration::from_secs(60))).await?.id;
                p.save(
                    owner,
                    instore::SaveRequest {
                        instance: id,
                        held_version: None,
                        busy: Vec::new(),
                        save: instore::Save::data(bag([("n", 1i64)])),
                        rules: rules(),
                        promoted: None,
                    },
                )
                .await
                .map(|_| ())
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => created += 1,
                Err(instore::StoreError::InstanceLocked { .. }) => {}
                Err(other) => panic!("a racing creator got {other:?}"),
            }
        }
        assert_eq!(created, 1);
    }
}

/// A call abandoned by its caller (a command cut off by its timeout) is cancelled on the server
/// and its connection never reused: it cannot take effect later, after the runtime has released
/// the lock and another command has moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_call_is_cancelled_and_never_takes_effect_later() {
    let clock = ManualClock::starting_now();
    let (provider, guard) = support::provider(clock.clone()).await;
    let owner = provider
        .create_owner(new_owner(Duration::from_secs(60)))
        .await
        .expect("owner")
        .id;
    let id = instore::InstanceId::new();
    let save = |n: i64, held| instore::SaveRequest {
        instance: id,
        held_version: held,
        busy: Vec::new(),
        save: instore::Save::data(bag([("n", n)])),
        rules: rules(),
        promoted: None,
    };
    let first = provider.save(owner, save(1, None)).await.expect("save");

    // Another session holds the row, so the next save waits on the server.
    let mut admin = support::admin().await;
    let tx = admin.transaction().await.expect("begin");
    tx.execute(
        &format!(
            "select 1 from \"{}\".instances where id = $1 for update",
            guard.0
        ),
        &[&id.as_uuid()],
    )
    .await
    .expect("lock the row");
    let cut_off = tokio::time::timeout(
        Duration::from_millis(300),
        provider.save(owner, save(2, Some(first.lock_version))),
    )
    .await;
    assert!(cut_off.is_err(), "the save should have been waiting");

    // The abandoned statement disappears from the server before the row is free again.
    let app = format!("instore/{}", guard.0);
    let mut waiting = i64::MAX;
    for _ in 0..100 {
        waiting = tx
            .query_one(
                "select count(*) from pg_stat_activity where application_name = $1 \
                 and state = 'active' and wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        waiting, 0,
        "the abandoned save is still waiting on the server"
    );
    tx.rollback().await.expect("rollback");

    let reread = instore::LoadRequest {
        target: instore::LoadTarget::Id {
            instance: id,
            accept_uninitialized: false,
        },
        held_version: Some(first.lock_version),
        busy: Vec::new(),
        guards: Default::default(),
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now = provider.load(owner, reread).await.expect("reload");
    assert_eq!(
        now.data,
        bag([("n", 1i64)]),
        "the abandoned save took effect"
    );
}
