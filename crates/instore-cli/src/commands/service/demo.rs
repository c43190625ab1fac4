//! `instore serve --demo`: hosts running sample workflows beside the server, so the dashboard is
//! alive at once — orders waiting for payment (bookmarks resumed by key), packing and shipping
//! on durable timers, some expiring unpaid (cancelled by their own timer), some faulting (and so
//! suspended with an exception), some held for review by an operator's Suspend command; and
//! invoices of another host type beside them.
//!
//! Everything here is deterministic per order number (no random source), so the same orders
//! fault, expire and get held on every run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    bag, ControlCommand, ControlProvider, InstanceFilter, InstanceId, InstanceStatus,
    InstanceStore, KeyId, QueryProvider, Uuid,
};
use instore_host::{Context, Fault, Host, HostError, HostSettings, Start, Step, Workflow};
use instore_management::EndpointRegistry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The host type of the demo orders.
pub const ORDERS: &str = "orders";
/// The host type of the demo invoices.
pub const INVOICES: &str = "invoices";

/// Orders started at once when the demo starts, so every kind of instance shows up within
/// seconds.
const FIRST_ORDERS: u64 = 24;
/// Time between two new orders after that.
const ORDER_INTERVAL: Duration = Duration::from_millis(1500);
/// New orders pause while this many instances are running or suspended, so a demo left running
/// for days stays small (completed ones are purged by retention).
const MAX_OPEN: u64 = 400;

/// The running demo: its hosts and the order generator. Dropping it does not stop them; call
/// [`Demo::stop`].
#[derive(Debug)]
pub struct Demo {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Demo {
    /// Starts two hosts of [`ORDERS`] and one of [`INVOICES`] on `store`, registering their
    /// control endpoints in `registry`, and the order generator.
    pub async fn start(
        store: InstanceStore,
        query: Arc<dyn QueryProvider>,
        control: Arc<dyn ControlProvider>,
        registry: EndpointRegistry,
    ) -> Result<Demo, HostError> {
        let restocked = Arc::new(Mutex::new(HashSet::new()));
        let timed_out = Arc::new(Mutex::new(HashSet::new()));
        let settings = HostSettings {
            max_running: 8,
            ..HostSettings::default()
        };
        let mut hosts = Vec::new();
        for n in 1..=2 {
            let host = Host::builder(store.clone())
                .host_type(
                    ORDERS,
                    Order {
                        restocked: restocked.clone(),
                    },
                )
                .host_type(
                    INVOICES,
                    Invoice {
                        timed_out: timed_out.clone(),
                    },
                )
                .settings(settings.clone())
                .control_registry(registry.clone())
                .owner_metadata(bag([("demo:host", format!("demo-host-{n}"))]))
                .build()
                .await?;
            hosts.push(host);
        }

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for host in &hosts {
            let (host, stop) = (host.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = host.run(stop).await {
                    tracing::warn!(error = %e, "a demo host stopped");
                }
            });
        }
        let generator = Generator {
            hosts,
            query,
            control,
            run: Uuid::new_v4(),
        };
        tasks.spawn(generator.run(shutdown.clone()));
        Ok(Demo { shutdown, tasks })
    }

    /// Stops the generator and the hosts (running steps finish and save) and waits for them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A number in `0..n` that looks random but is the same for the same `seed` on every run.
fn pick(seed: u64, n: u64) -> u64 {
    // splitmix64's finaliser: consecutive seeds give unrelated values.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % n
}

/// Whether `instance` is new to `seen` (and remembers it).
fn first_time(seen: &Mutex<HashSet<InstanceId>>, instance: InstanceId) -> bool {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(instance)
}

/// A demo order: waits for payment (bookmark `paid`, 20 s deadline), is packed (a timer; every
/// sixth order faults once for want of stock, and runs again when resumed), ships (bookmark
/// `delivered` or a timer), and completes.
#[derive(Debug)]
struct Order {
    /// Orders that have faulted once in this process: the stock "arrives" with the fault, so a
    /// resumed order packs on its second try.
    restocked: Arc<Mutex<HashSet<InstanceId>>>,
}

#[async_trait::async_trait]
impl Workflow for Order {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        let number = cx.get_i64("orders:number").unwrap_or(0) as u64;
        match cx.get_str("orders:state").map(str::to_owned).as_deref() {
            None => {
                cx.set("orders:state", "awaiting payment");
                Ok(Step::wait_for("paid").or_timer(Duration::from_secs(20)))
            }
            Some("awaiting payment") => match cx.bookmark() {
                Some(paid) => {
                    let amount = paid.payload.clone();
                    cx.set("orders:paid", amount);
                    cx.set("orders:state", "packing");
                    Ok(Step::sleep(Duration::from_secs(2 + pick(number, 5))))
                }
                None => {
                    cx.set("orders:state", "expired unpaid");
                    Ok(Step::canceled())
                }
            },
            Some("packing") => {
                if number % 6 == 0 && first_time(&self.restocked, cx.instance()) {
                    return Err(Fault::new(
                        "InventoryShortage",
                        format!(
                            "order {number}: item SKU-{} is out of stock",
                            100 + number % 17
                        ),
                    ));
                }
                cx.set("orders:state", "shipped");
                Ok(Step::wait_for("delivered").or_timer(Duration::from_secs(8 + pick(number, 8))))
            }
            Some("shipped") => {
                cx.set(
                    "orders:state",
                    if cx.bookmark().is_some() {
                        "delivered"
                    } else {
                        "delivery assumed"
                    },
                );
                Ok(Step::done())
            }
            Some(other) => Err(Fault::new(
                "UnknownState",
                format!("order {number} is in an unknown state '{other}'"),
            )),
        }
    }
}

/// A demo invoice: sent, then settled after a timer; every eleventh payment gateway call times
/// out once (a fault, so the invoice is suspended until an operator resumes it).
#[derive(Debug)]
struct Invoice {
    /// Invoices whose gateway call has timed out once in this process; the retry succeeds.
    timed_out: Arc<Mutex<HashSet<InstanceId>>>,
}

#[async_trait::async_trait]
impl Workflow for Invoice {
    async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
        let number = cx.get_i64("invoices:number").unwrap_or(0) as u64;
        if cx.is_start() {
            cx.set("invoices:state", "sent");
            return Ok(Step::sleep(Duration::from_secs(3 + pick(number, 6))));
        }
        if number % 11 == 0 && first_time(&self.timed_out, cx.instance()) {
            return Err(Fault::new(
                "PaymentGatewayTimeout",
                format!("invoice {number}: the payment gateway did not answer within 30 s"),
            ));
        }
        cx.set("invoices:state", "settled");
        Ok(Step::done())
    }
}

/// Starts orders, pays and delivers most of them, and asks an operator's review (a Suspend
/// command through the control queue) for a few.
struct Generator {
    hosts: Vec<Host>,
    query: Arc<dyn QueryProvider>,
    control: Arc<dyn ControlProvider>,
    /// Keys are derived per demo run, so a restarted demo on the same store starts fresh orders.
    run: Uuid,
}

impl Generator {
    async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut number = 0u64;
        let mut customers = JoinSet::new();
        loop {
            if number >= FIRST_ORDERS {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ORDER_INTERVAL) => {}
                }
                if this.open_instances().await >= MAX_OPEN {
                    continue;
                }
            } else if shutdown.is_cancelled() {
                break;
            }
            number += 1;
            let (this, stop) = (this.clone(), shutdown.clone());
            customers.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    outcome = this.order(number) => {
                        if let Err(e) = outcome {
                            tracing::debug!(order = number, error = %e, "a demo order went its own way");
                        }
                    }
                }
            });
            // Finished customers leave the set, so it does not grow for ever.
            while customers.try_join_next().is_some() {}
        }
        customers.shutdown().await;
    }

    async fn open_instances(&self) -> u64 {
        let filter = InstanceFilter {
            status: vec![InstanceStatus::Running, InstanceStatus::Suspended],
            ..InstanceFilter::default()
        };
        self.query.count(&filter).await.unwrap_or(0)
    }

    fn key(&self, what: &str, number: u64) -> KeyId {
        KeyId::derive(self.run, &format!("{what}-{number}"))
    }

    /// One customer's order, from start to delivery.
    async fn order(&self, number: u64) -> Result<(), HostError> {
        let host = &self.hosts[(number % self.hosts.len() as u64) as usize];
        let key = self.key("order", number);
        let amount = 20 + pick(number, 180) as i64;
        let start = Start::with_data(bag([
            ("orders:number", instore::Value::from(number as i64)),
            (
                "orders:customer",
                format!("customer-{}", pick(number + 7, 40)).into(),
            ),
            ("orders:total", amount.into()),
        ]))
        .key(key);
        let id = host.start(ORDERS, start).await?;
        if number % 9 == 0 {
            // Large orders wait for a fraud review: an operator's Suspend, through the queue.
            let review = ControlCommand::Suspend {
                reason: format!("fraud review of order {number}"),
            };
            if let Err(e) = self.control.enqueue(id, review).await {
                tracing::debug!(order = number, error = %e, "no review");
            }
            return Ok(());
        }
        if number % 7 == 3 {
            return Ok(()); // never paid: expires after 20 s
        }
        tokio::time::sleep(Duration::from_millis(500 + 500 * pick(number + 1, 8))).await;
        host.resume_bookmark(key, "paid", amount).await?;
        let invoice = Start::with_data(bag([
            ("invoices:number", instore::Value::from(number as i64)),
            ("invoices:order", id.to_string().into()),
            ("invoices:amount", amount.into()),
        ]))
        .key(self.key("invoice", number));
        host.start(INVOICES, invoice).await?;
        if pick(number + 2, 2) == 0 {
            // Delivered while shipping (a bookmark); the others complete on their timer.
            tokio::time::sleep(Duration::from_secs(9)).await;
            host.resume_bookmark(key, "delivered", true).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_stay_in_range_and_repeat() {
        for seed in 0..1000 {
            assert!(pick(seed, 5) < 5);
            assert_eq!(pick(seed, 180), pick(seed, 180));
        }
        let distinct: HashSet<u64> = (0..100).map(|s| pick(s, 8)).collect();
        assert_eq!(distinct.len(), 8, "every value shows up");
    }
}
