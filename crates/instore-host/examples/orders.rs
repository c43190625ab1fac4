//! A durable order workflow on the host runtime. Run with
//! `cargo run -p instore-host --example orders` (in memory), or pass a SQLite path:
//! `cargo run -p instore-host --example orders -- orders.db`.
//!
//! Each order waits for its payment (a bookmark, resumed by the order's key), then waits a
//! short durable timer before it ships; an unpaid order is cancelled by its own timer.

use std::time::Duration;

use instore::{bag, InstanceStore, KeyId, StoreSettings, Uuid};
use instore_host::{Context, Fault, Host, Start, Step, Workflow};
use tokio_util::sync::CancellationToken;

struct Order;

#[async_trait::async_trait]
impl Workflow for Order {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        match (cx.get_str("orders:state"), cx.bookmark()) {
            (None, _) => {
                cx.set("orders:state", "awaiting payment");
                Ok(Step::wait_for("paid").or_timer(Duration::from_secs(2)))
            }
            (Some("awaiting payment"), Some(paid)) => {
                cx.set("orders:paid", paid.payload.clone());
                cx.set("orders:state", "packing");
                Ok(Step::sleep(Duration::from_millis(300)))
            }
            (Some("awaiting payment"), None) => {
                cx.set("orders:state", "expired unpaid");
                println!(
                    "order {} expired unpaid",
                    cx.get_i64("orders:number").unwrap_or(0)
                );
                Ok(Step::canceled())
            }
            _ => {
                cx.set("orders:state", "shipped");
                println!("order {} shipped", cx.get_i64("orders:number").unwrap_or(0));
                Ok(Step::done())
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = StoreSettings {
        suspension_extension: true,
        ..StoreSettings::default()
    };
    let store = match std::env::args().nth(1) {
        Some(path) => instore_sqlite::open_store(&format!("sqlite://{path}"), settings).await?,
        None => InstanceStore::open_with("memory:", settings).await?,
    };
    let host = Host::builder(store)
        .host_type("orders", Order)
        .build()
        .await?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.clone().run(shutdown.clone()));

    let namespace = Uuid::from_u128(0x0123_4567_89ab_cdef);
    let run = Uuid::new_v4().to_string();
    let key = |n: i64| KeyId::derive(namespace, &format!("{run}/order-{n}"));
    for n in 1..=3 {
        let start = Start::with_data(bag([("orders:number", n)])).key(key(n));
        let id = host.start("orders", start).await?;
        println!("order {n} started as {id}, awaiting payment");
    }
    // Orders 1 and 2 are paid; order 3 is not, and expires.
    for n in 1..=2 {
        host.resume_bookmark(key(n), "paid", 10 * n).await?;
        println!("order {n} paid");
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    shutdown.cancel();
    running.await??;
    Ok(())
}
