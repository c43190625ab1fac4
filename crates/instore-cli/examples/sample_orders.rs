//! Fills the configured store (by default the SQLite file `instore.db` in the working directory)
//! with sample order instances, so the `instore` CLI has something to show:
//!
//! ```sh
//! cargo run -p instore-cli --example sample_orders
//! cargo run -p instore-cli -- instances group --by condition
//! ```
//!
//! It registers an `orders` host whose lease it lets lapse when it exits, and leaves: orders
//! waiting on a payment bookmark, orders with a durable timer, a few suspended (one by an
//! operator, some after an exception), completed and faulted ones. `orders:customer` and
//! `orders:total` are promoted, so `--where orders:customer=ACME` finds them.

use std::time::Duration;

use instore::{
    bag, CreateOwner, ExceptionInfo, ExecutionStatus, InstanceStore, KeyId, LoadByKey, NewKey,
    Save, SuspendChange, Uuid,
};

const TIMEOUT: Duration = Duration::from_secs(10);
const CUSTOMERS: [&str; 4] = ["ACME", "Globex", "Initech", "Umbrella"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = instore_config::Config::load(None)?;
    let mut store_config = config.store(None)?.clone();
    store_config.settings.promotions = vec!["orders:customer".into(), "orders:total".into()];
    let opened = instore_config::open_migrating(&store_config).await?;
    let store = opened.store;

    let owner = store.create_handle();
    store
        .execute(&owner, CreateOwner::host_type("orders"), TIMEOUT)
        .await?;

    let run = Uuid::new_v4();
    for n in 0..24i64 {
        let customer = CUSTOMERS[n as usize % CUSTOMERS.len()];
        let key = KeyId::derive(run, &format!("order-{n}"));
        let data = bag([
            ("orders:customer", instore::Value::from(customer)),
            ("orders:total", instore::Value::from(10 * (n + 1))),
        ]);
        let mut save = Save::data(data).and_unlock();
        match n % 6 {
            // Waiting for the payment: resumed by key when it arrives.
            0 | 1 => save.bookmarks = vec!["payment-received".into()],
            // Waiting for the shipping reminder timer.
            2 => save.timer = Some(store.clock().now().plus(Duration::from_secs(3600))),
            3 => save = save.and_complete().with_status(ExecutionStatus::Closed),
            4 if n % 12 == 4 => {
                save.suspend = SuspendChange::Suspend {
                    reason: "payment provider unreachable".into(),
                    exception: Some(ExceptionInfo {
                        name: "PaymentTimeout".into(),
                        message: "no answer from the payment provider in 30s".into(),
                    }),
                }
            }
            4 => {
                save.suspend = SuspendChange::Suspend {
                    reason: "held by an operator for a fraud check".into(),
                    exception: None,
                }
            }
            _ => save = save.and_complete().with_status(ExecutionStatus::Faulted),
        }
        let handle = store.create_handle();
        let mut load = LoadByKey::or_create(key);
        load.keys_to_associate = vec![NewKey::from(KeyId::derive(run, &format!("invoice-{n}")))];
        store.execute(&handle, load, TIMEOUT).await?;
        store.execute(&handle, save, TIMEOUT).await?;
    }
    println!(
        "24 sample orders saved in store '{}' ({}). Try: instore instances list",
        opened.name, opened.url
    );
    finish(store).await;
    Ok(())
}

/// Ends the sample host without deleting its owner, as a host that simply stops would.
async fn finish(store: InstanceStore) {
    store.shutdown().await;
}
