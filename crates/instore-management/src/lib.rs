//! # instore-management — the management service (SPEC §10)
//!
//! Operators enqueue control commands (Suspend, Resume, Terminate, Cancel) through a store's
//! [`instore::ControlProvider`]; a [`ManagementService`] drains that queue. For each command it
//! reads, it
//!
//! - calls the instance's **control endpoint** when a live owner holds the instance and
//!   registered one this service can reach ([`ControlEndpoint`], [`EndpointResolver`],
//!   [`EndpointRegistry`] for hosts in the same process, [`HttpEndpointResolver`] for hosts
//!   serving it over HTTP) — the host applies the command to the running instance;
//! - otherwise executes it **at the store level** as its own instance owner: Suspend persists
//!   the suspension, Resume clears it (runnable again), Terminate completes the instance with
//!   status `Terminated`, Cancel records a cancellation request ([`CANCEL_REQUESTED`]) and makes
//!   the instance runnable so a host of its type runs its cancellation logic;
//! - completes the command, or abandons it with the error for a later retry (after the last
//!   allowed attempt the queue moves it to the error log).
//!
//! It also calls an [`ActivationHook`] (a command, or an HTTP URL) for host types that have
//! runnable instances but no live host, and purges completed instances past the store's
//! retention. Several services may share one store.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use instore::{bag, ControlCommand, InstanceId, InstanceStore, MemoryProvider, Providers, Save};
//! use instore_management::ManagementService;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), instore::StoreError> {
//! let providers = Providers::of(MemoryProvider::new());
//! let store = InstanceStore::builder(providers.persistence.clone()).build()?;
//!
//! // An instance, saved by some host and released.
//! let id = InstanceId::new();
//! let host = store.create_handle_for(None, None);
//! store.execute(&host, instore::CreateOwner::host_type("orders"), Duration::from_secs(5)).await?;
//! let handle = store.create_handle_for(host.owner(), Some(id));
//! store.execute(&handle, Save::data(bag([("step", 1i64)])).and_unlock(), Duration::from_secs(5)).await?;
//!
//! // The service, running until shutdown.
//! let service = ManagementService::for_providers(store.clone(), &providers).build()?;
//! let nudge = service.nudge();
//! let shutdown = CancellationToken::new();
//! let running = tokio::spawn(service.run(shutdown.clone()));
//!
//! // An operator suspends the instance.
//! providers.control.enqueue(id, ControlCommand::Suspend { reason: "audit".into() }).await?;
//! nudge.nudge();
//! # let mut suspended = false;
//! # for _ in 0..500 {
//! #     let page = providers.query.query(&instore::InstanceFilter { ids: vec![id], ..Default::default() }, &Default::default()).await?;
//! #     if page.items[0].suspension.is_some() { suspended = true; break; }
//! #     tokio::time::sleep(Duration::from_millis(10)).await;
//! # }
//! # assert!(suspended);
//!
//! shutdown.cancel();
//! running.await.expect("the service stops cleanly");
//! # Ok(())
//! # }
//! ```

mod activation;
mod endpoint;
mod execution;
mod http;
mod http_endpoint;
mod owner;
mod retention;
mod service;
mod settings;
mod stats;

pub use activation::{
    hook_from_spec, ActivationHook, CommandHook, HookError, HttpHook, ENV_HOST_TYPE,
    ENV_RUNNABLE_COUNT,
};
pub use endpoint::{owner_metadata, ControlEndpoint, EndpointRegistry, EndpointResolver};
pub use execution::{store_level_save, CANCEL_REQUESTED, TERMINATION_REASON};
pub use http_endpoint::HttpEndpointResolver;
pub use owner::ROLE;
pub use service::{ManagementService, ManagementServiceBuilder, Nudge};
pub use settings::ManagementSettings;
pub use stats::{ServiceStats, StatsSnapshot};
