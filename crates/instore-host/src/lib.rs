//! # instore-host — the host runtime (SPEC §11)
//!
//! Write a [`Workflow`] — one step at a time, each answering what the instance waits for next —
//! register it under a host type, and a [`Host`] does the rest: registers the host's owners in
//! the store (the store renews their leases), starts instances, runs each step when its timer
//! falls due or a bookmark is resumed by key, persists the result at every idle point (data,
//! timer, status, bookmarks, keys), suspends an instance whose step fails, and applies control
//! commands (Suspend, Resume, Terminate, Cancel) from a management service — in the same process
//! or over HTTP. A host that dies leaves nothing stuck: another host of the same type takes its
//! instances over once its lease ends.
//!
//! ```
//! use std::time::Duration;
//! use instore::{bag, InstanceStore, KeyId, Uuid};
//! use instore_host::{Context, Fault, Host, Start, Step, Workflow};
//! use tokio_util::sync::CancellationToken;
//!
//! /// An order: waits for payment (a bookmark), then ships after a short durable timer.
//! struct Order;
//!
//! #[async_trait::async_trait]
//! impl Workflow for Order {
//!     async fn step(&self, cx: &mut Context) -> Result<Step, Fault> {
//!         if cx.is_start() {
//!             return Ok(Step::wait_for("paid"));
//!         }
//!         if let Some(paid) = cx.bookmark() {
//!             cx.set("orders:paid", paid.payload.clone());
//!             return Ok(Step::sleep(Duration::from_millis(50))); // then ship
//!         }
//!         cx.set("orders:shipped", true);
//!         Ok(Step::done())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InstanceStore::open("memory:").await?;
//! let host = Host::builder(store).host_type("orders", Order).build().await?;
//! let shutdown = CancellationToken::new();
//! let running = tokio::spawn(host.clone().run(shutdown.clone()));
//!
//! let key = KeyId::derive(Uuid::nil(), "order-42");
//! let id = host.start("orders", Start::with_data(bag([("orders:total", 99i64)])).key(key)).await?;
//! host.resume_bookmark(key, "paid", 99i64).await?; // the payment arrives
//! # for _ in 0..200 {
//! #     if matches!(host.start("orders", Start::default().key(key)).await,
//! #         Err(instore_host::HostError::Store(instore::StoreError::InstanceKeyComplete { .. }))) { break; }
//! #     tokio::time::sleep(Duration::from_millis(10)).await;
//! # }
//! // ... 50 ms later the timer fires and the order completes.
//! shutdown.cancel();
//! running.await??;
//! # let _ = id;
//! # Ok(())
//! # }
//! ```
//!
//! **What runs where.** Each host type has an owner of its own (and the host one more, without
//! a host type, for loads by key and control commands). [`Host::run`] runs one event loop per
//! host type: `wait_for_events` → `TryLoadRunnable` until nothing is runnable, each instance's
//! step on a task of its own, at most [`HostSettings::max_running`] at once. [`Host::start`] and
//! [`Host::resume_bookmark`] run their step in the caller's task and return once it is saved.
//! A host serves one store; to serve several, build one `Host` per store and run them side by
//! side.
//!
//! **Control.** [`HostBuilder::control_registry`] registers the host's [`ControlEndpoint`] for a
//! management service in the same process; [`HostBuilder::control_http`] serves it at
//! `POST /control/{instance}` for one in another process (`HttpEndpointResolver` in
//! `instore-management`). Commands for instances that no host holds are executed by the
//! management service at the store level; a store-level Cancel leaves
//! [`instore_management::CANCEL_REQUESTED`] on the instance, and the host that loads it runs
//! [`Workflow::on_cancel`].
//!
//! **Metrics** (the `metrics` facade): see [`metrics`].
//!
//! [`ControlEndpoint`]: instore_management::ControlEndpoint

mod control;
mod host;
mod http;
pub mod metrics;
mod runner;
mod workflow;

pub use host::{Host, HostBuilder, HostError, HostSettings, Start, HOST_ROLE};
pub use http::control_router;
pub use runner::FAULT_REASON;
pub use workflow::{Bookmark, Context, Fault, Outcome, Step, Timer, Trigger, Workflow};
