//! The server drops every connection under load (SPEC §6.7 transient storage errors; issue:
//! "the server restarted under load"). Eight handles of one owner save as fast as they can
//! while the test terminates every backend of the store (`pg_terminate_backend`, what a server
//! restart does to its clients) five times. Checked:
//!
//! - every failed command failed with a *transient* storage error, and there were some;
//! - later commands succeed through the same store (no process or store restart);
//! - the owner's lease survived, so every handle still holds its lock at the same lock_version;
//! - nothing acknowledged is lost: each instance holds exactly its last acknowledged save;
//! - push wake-ups come back: the notification listener reconnects and delivers again.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use instore::{
    bag, Command, CreateOwner, ExecutionStatus, InstanceId, InstanceStore, Load,
    PersistenceProvider, Save, StoreError, StoreSettings, Value,
};
use instore_postgres::{PgClock, PgOptions, PgProvider};

const HANDLES: usize = 8;
const KILLS: usize = 5;
const T: Duration = Duration::from_secs(10);

/// Terminates every backend of the store (its pool and its listener); returns how many.
async fn terminate_backends(schema: &str) -> i64 {
    let client = support::admin().await;
    let n: i64 = client
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = $1 and pid <> pg_backend_pid()",
            &[&format!("instore/{schema}")],
        )
        .await
        .expect("terminate")
        .get(0);
    n
}

/// Retries a command through transient storage errors (counting them); any other error fails.
async fn save_until_ok(
    store: &InstanceStore,
    handle: &instore::InstanceHandle,
    command: impl Into<Command>,
    transient: &AtomicUsize,
) -> instore::InstanceView {
    let command = command.into();
    for _ in 0..200 {
        match store.execute(handle, command.clone(), T).await {
            Ok(view) => return view,
            Err(StoreError::Storage(e)) if e.is_transient() => {
                transient.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("a command failed with a non-transient error: {other:?}"),
        }
    }
    panic!("a save kept failing long after the connections were severed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severed_connections_under_load_fail_transiently_and_lose_nothing() {
    let schema = support::fresh_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let provider = PgProvider::open_with(
        &support::store_url(&schema),
        PgOptions {
            pool_size: 8,
            ..PgOptions::default()
        },
        PgClock::Server,
    )
    .await
    .expect("open");
    let store = Arc::new(
        InstanceStore::builder(provider.clone())
            .settings(StoreSettings {
                renew_every: Duration::from_secs(1),
                ..StoreSettings::default()
            })
            .build()
            .expect("store"),
    );
    let owner_handle = store.create_handle();
    store
        .execute(
            &owner_handle,
            CreateOwner {
                host_type: Some("orders".into()),
                ..CreateOwner::default()
            },
            T,
        )
        .await
        .expect("owner");
    let owner = owner_handle.owner().expect("bound");

    let transient = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..HANDLES {
        let (store, transient, stop) = (store.clone(), transient.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let id = InstanceId::new();
            let handle = store.create_handle_for(Some(owner), Some(id));
            let first =
                save_until_ok(&store, &handle, Save::data(bag([("n", 0i64)])), &transient).await;
            let version = first.lock_version.expect("the first save takes the lock");
            let mut acked = 0i64;
            let mut failures = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let next = acked + 1;
                match store
                    .execute(&handle, Save::data(bag([("n", next)])), T)
                    .await
                {
                    Ok(view) => {
                        assert_eq!(view.lock_version, Some(version), "the lock moved");
                        acked = next;
                    }
                    Err(StoreError::Storage(e)) if e.is_transient() => failures += 1,
                    Err(other) => panic!("a save failed with a non-transient error: {other:?}"),
                }
            }
            (id, handle, version, acked, failures)
        }));
    }

    // Let the saves run, then sever every connection of the store, again and again.
    let mut terminated = 0;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        terminated += terminate_backends(&schema).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        terminated >= KILLS as i64,
        "only {terminated} backends were terminated"
    );

    let mut in_flight_failures = 0;
    for task in tasks {
        let (id, handle, version, acked, failures) = task.await.expect("saver");
        in_flight_failures += failures;
        assert!(acked > 0, "instance {id}: no save was acknowledged");
        // Later commands succeed on the same handle: the lock survived at the same version.
        let view = save_until_ok(&store, &handle, Load::default(), &transient).await;
        assert_eq!(view.lock_version, Some(version), "instance {id}: lock lost");
        assert_eq!(
            view.data.get("n").map(|v| &v.value),
            Some(&Value::Int(acked)),
            "instance {id}: the last acknowledged save is not what is stored"
        );
        let done = Save::data(bag([("n", acked + 1)]));
        let view = save_until_ok(&store, &handle, done, &transient).await;
        assert_eq!(view.lock_version, Some(version));
    }
    println!(
        "{terminated} backends terminated; {in_flight_failures} saves cut off, {} transient retries",
        transient.load(Ordering::Relaxed)
    );
    assert!(
        in_flight_failures > 0,
        "no command was cut off: the test did not sever anything in use"
    );
    let owners = provider.owners().await.expect("owners");
    let me = owners
        .iter()
        .find(|o| o.id == owner)
        .expect("the owner survived");
    assert!(
        me.lease_expires_at > provider.clock().now(),
        "the owner's lease ended"
    );

    // Push wake-ups come back: once the listener is listening again, an unlock that leaves an
    // executing instance runnable reaches it.
    let listening = tokio::time::timeout(Duration::from_secs(10), async {
        while !listener_is_back(&schema).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(listening.is_ok(), "the listener did not reconnect");
    let mut wake = provider.wake_ups();
    let seen = *wake.borrow_and_update();
    let handle = store.create_handle_for(Some(owner), Some(InstanceId::new()));
    let executing = Save {
        status: ExecutionStatus::Executing,
        ..Save::data(bag([("n", 0i64)]))
    }
    .and_unlock();
    save_until_ok(&store, &handle, executing, &transient).await;
    let pushed = tokio::time::timeout(Duration::from_secs(10), wake.wait_for(|n| *n > seen)).await;
    assert!(
        pushed.is_ok(),
        "no wake-up arrived after the listener's connection was severed"
    );
}

/// Whether the store's listener connection is back and has run its `LISTEN`.
async fn listener_is_back(schema: &str) -> bool {
    let client = support::admin().await;
    let back: bool = client
        .query_one(
            "select exists (select 1 from pg_stat_activity where application_name = $1 \
             and query ilike 'listen%')",
            &[&format!("instore/{schema}")],
        )
        .await
        .expect("pg_stat_activity")
        .get(0);
    back
}
