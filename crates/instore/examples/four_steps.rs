//! A tiny order host on the in-memory store: the four steps of SPEC §2, durable timers and
//! push wake-ups. Run with `cargo run -p instore --example four_steps`.
//!
//! It creates three orders by key, each waiting on a timer one to three seconds away, then
//! waits for `HasRunnableWorkflow`, picks each order up with `TryLoadRunnable` as its timer falls
//! due, and completes it.

use std::time::{Duration, Instant};

use instore::{
    bag, Command, CreateOwner, ExecutionStatus, InstanceStore, KeyId, LoadByKey, Save, StoreError,
    Uuid,
};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    // 1. Obtain a store.
    let store = InstanceStore::open("memory:").await?;
    let clock = store.clock();
    let started = Instant::now();

    // 2. Create a handle and register as an owner of host type `orders`.
    let owner = store.create_handle();
    store
        .execute(&owner, CreateOwner::host_type("orders"), TIMEOUT)
        .await?;

    // 3. Create three orders by key, each idle on a timer.
    let namespace = Uuid::from_u128(0x0123_4567_89ab_cdef);
    for (n, delay) in [(1, 3), (2, 1), (3, 2)] {
        let key = KeyId::derive(namespace, &format!("order-{n}"));
        let handle = store.create_handle();
        let view = store
            .execute(&handle, LoadByKey::or_create(key), TIMEOUT)
            .await?;
        let due = clock.now().plus(Duration::from_secs(delay));
        let save = Save::data(bag([("orders:number", n), ("orders:state", 0)]))
            .with_status(ExecutionStatus::Idle)
            .with_timer(due)
            .and_unlock();
        store.execute(&handle, save, TIMEOUT).await?;
        println!(
            "created order-{n} as instance {} (timer in {delay}s)",
            view.instance.expect("bound")
        );
    }

    // 4. Wait for runnable instances and complete them as their timers fall due.
    let mut done = 0;
    while done < 3 {
        let events = store.wait_for_events(&owner, TIMEOUT).await?;
        if events.is_empty() {
            eprintln!("no order became runnable within {TIMEOUT:?}");
            std::process::exit(1);
        }
        loop {
            let handle = store.create_handle();
            let view = store
                .execute(&handle, Command::TryLoadRunnable, TIMEOUT)
                .await?;
            let Some(instance) = view.instance else { break };
            let number = view
                .data
                .get("orders:number")
                .map(|v| v.value.to_string())
                .unwrap_or_default();
            store
                .execute(
                    &handle,
                    Save::data(view.data.clone()).and_complete(),
                    TIMEOUT,
                )
                .await?;
            done += 1;
            println!(
                "{:>5} ms  order {number} ({instance}) ran at lock version {}, completed",
                started.elapsed().as_millis(),
                view.lock_version.unwrap_or_default()
            );
        }
    }
    println!("all 3 orders completed; each was woken by a push, not a poll");
    Ok(())
}
