//! # instore-server — the HTTP face of an instore store (SPEC §14 `instore serve`)
//!
//! One [`Server`] serves, over one store:
//!
//! - a **JSON API** under `/api/v1` (query, count and group instances with every filter; show
//!   one; enqueue Suspend / Resume / Terminate / Cancel; remove; the control queue, the error
//!   log, owners, health), described by an **OpenAPI** document at `/openapi.json`;
//! - the **management service** (`instore_management`) as a background task, nudged by every
//!   command enqueued through the API, with an [`EndpointRegistry`] the caller passes in so hosts
//!   in the same process are reached through their control endpoints;
//! - **Prometheus metrics** at `/metrics`;
//! - the **dashboard** at `/`: pages rendered here, data fetched from the API by a little
//!   JavaScript (no build step; assets compiled in);
//! - **bearer-token auth**: `reader` tokens query, `admin` tokens also steer; without tokens
//!   the server refuses to listen on anything but a loopback address.
//!
//! ```
//! use std::sync::Arc;
//! use instore_server::Server;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = instore_config::Config::from_toml("[stores.demo]\nurl = \"memory:\"\n", "instore.toml".as_ref())?;
//! let opened = instore_config::open(config.store(None)?).await?;
//! let server = Server::builder(opened).build()?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = CancellationToken::new();
//! let running = tokio::spawn(server.serve(listener, shutdown.clone()));
//! // ... GET http://127.0.0.1:PORT/api/v1/instances ...
//! shutdown.cancel();
//! running.await??;
//! # Ok(())
//! # }
//! ```

mod api;
mod auth;
mod dashboard;
mod dto;
mod error;
mod history;
mod metrics;
mod params;
mod state;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use instore::{InstanceStore, Providers, StoreError};
use instore_config::OpenedStore;
use instore_management::{EndpointRegistry, ManagementService, ManagementSettings, ServiceStats};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use api::ApiDoc;
pub use auth::{ApiToken, Role};
pub use error::{ApiError, ErrorBody};
pub use metrics::recorder;
pub use state::CountsSample;

use state::AppState;

/// How often the dashboard's counts are sampled by default.
pub const DEFAULT_HISTORY_INTERVAL: Duration = Duration::from_secs(10);
/// How many samples the ring keeps by default (an hour at the default interval).
pub const DEFAULT_HISTORY_LEN: usize = 360;

/// Why a server did not build or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Without tokens every caller is an admin: listening beyond loopback would let anyone on
    /// the network steer instances. Configure tokens, or listen on 127.0.0.1 / [::1].
    #[error(
        "refusing to listen on {addr} without tokens: anyone who can reach it could steer instances; \
         add [[server.tokens]] to the configuration (reader and admin roles), or listen on a loopback \
         address like 127.0.0.1:8080"
    )]
    UnprotectedListen {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The management service's settings are wrong (the message names the setting).
    #[error("the management service")]
    Management(#[source] StoreError),
    /// Serving failed (the listener broke).
    #[error("serving HTTP failed")]
    Io(#[source] std::io::Error),
}

/// Builds a [`Server`] (see [`Server::builder`]).
#[derive(Debug)]
pub struct ServerBuilder {
    name: String,
    providers: Providers,
    store: InstanceStore,
    tokens: Vec<ApiToken>,
    endpoints: Option<Arc<EndpointRegistry>>,
    management: bool,
    management_settings: Option<ManagementSettings>,
    history_interval: Duration,
    history_len: usize,
}

impl ServerBuilder {
    /// The tokens to accept (none: no auth, loopback only).
    pub fn tokens(mut self, tokens: Vec<ApiToken>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The registry the management service resolves in-process control endpoints in (hosts of
    /// this process register there). Default: an empty one of its own.
    pub fn endpoints(mut self, registry: Arc<EndpointRegistry>) -> Self {
        self.endpoints = Some(registry);
        self
    }

    /// Whether to run a management service (default `true`). Off when another process runs
    /// one; commands enqueued here then wait for it.
    pub fn management(mut self, run: bool) -> Self {
        self.management = run;
        self
    }

    /// The management service's settings (default: `ManagementSettings::default()`).
    pub fn management_settings(mut self, settings: ManagementSettings) -> Self {
        self.management_settings = Some(settings);
        self
    }

    /// How often counts by status are sampled for the dashboard's chart, and how many samples
    /// are kept.
    pub fn history(mut self, every: Duration, len: usize) -> Self {
        self.history_interval = every;
        self.history_len = len.max(1);
        self
    }

    /// Builds the server: the router's state and (unless turned off) the management service.
    /// Installs the process's metrics recorder if none is yet.
    pub fn build(self) -> Result<Server, ServerError> {
        metrics::recorder();
        let management = if self.management {
            let mut b = ManagementService::for_providers(self.store.clone(), &self.providers);
            if let Some(r) = &self.endpoints {
                b = b.endpoints(r.clone());
            }
            if let Some(s) = self.management_settings {
                b = b.settings(s);
            }
            Some(b.build().map_err(ServerError::Management)?)
        } else {
            None
        };
        let state = Arc::new(AppState {
            name: self.name,
            providers: self.providers,
            tokens: self.tokens,
            nudge: management.as_ref().map(ManagementService::nudge),
            stats: management.as_ref().map_or_else(
                || Arc::new(ServiceStats::default()),
                ManagementService::stats,
            ),
            history: Mutex::new(VecDeque::new()),
            history_len: self.history_len,
        });
        Ok(Server {
            state,
            management,
            history_interval: self.history_interval,
        })
    }
}

/// The HTTP server of one store: API, OpenAPI, metrics, dashboard, management service.
#[derive(Debug)]
pub struct Server {
    state: Arc<AppState>,
    management: Option<ManagementService>,
    history_interval: Duration,
}

/// The background tasks of a server (management service, counts sampler), running until the
/// shutdown token they were started with is cancelled.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Waits for the tasks to end (cancel their shutdown token first).
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a background task of the server panicked");
            }
        }
    }
}

impl Server {
    /// A server over an opened store (name, providers and runtime from the configuration).
    pub fn builder(opened: OpenedStore) -> ServerBuilder {
        Self::builder_for(opened.name, opened.store, opened.providers)
    }

    /// A server over a store and its providers.
    pub fn builder_for(
        name: impl Into<String>,
        store: InstanceStore,
        providers: Providers,
    ) -> ServerBuilder {
        metrics::recorder();
        ServerBuilder {
            name: name.into(),
            providers,
            store,
            tokens: Vec::new(),
            endpoints: None,
            management: true,
            management_settings: None,
            history_interval: DEFAULT_HISTORY_INTERVAL,
            history_len: DEFAULT_HISTORY_LEN,
        }
    }

    /// The router: API, `/openapi.json`, `/metrics`, the dashboard; traced per request. Serve
    /// it yourself, or test it with `tower::ServiceExt::oneshot` (no socket needed).
    pub fn router(&self) -> Router {
        let protected = api::routes().route("/metrics", get(metrics_text)).layer(
            axum::middleware::from_fn_with_state(self.state.clone(), auth::authenticate),
        );
        Router::new()
            .merge(protected)
            .merge(dashboard::routes())
            .route("/openapi.json", get(openapi))
            .fallback(not_found)
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                }),
            )
            .with_state(self.state.clone())
    }

    /// Starts the management service (if the server has one) and the counts sampler, until
    /// `shutdown`. [`Server::serve`] does this itself; call it when serving [`Server::router`]
    /// some other way.
    pub fn start_background(&mut self, shutdown: CancellationToken) -> Background {
        let mut tasks = Vec::new();
        if let Some(service) = self.management.take() {
            tasks.push(tokio::spawn(service.run(shutdown.clone())));
        }
        tasks.push(tokio::spawn(history::run(
            self.state.clone(),
            self.history_interval,
            shutdown,
        )));
        Background { tasks }
    }

    /// Serves on `listener` until `shutdown` is cancelled, with the management service and the
    /// sampler running beside; then waits for them to stop. Refuses a non-loopback listener when
    /// the server has no tokens ([`ServerError::UnprotectedListen`]).
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Io)?;
        check_listen(addr, !self.state.tokens.is_empty())?;
        let router = self.router();
        let background = self.start_background(shutdown.clone());
        let stop = shutdown.clone();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        shutdown.cancel();
        background.join().await;
        served.map_err(ServerError::Io)
    }

    /// The store's providers (for hosts started beside the server).
    pub fn providers(&self) -> &Providers {
        &self.state.providers
    }
}

/// Whether the server may listen on `addr`: always with tokens, else only on loopback.
pub fn check_listen(addr: SocketAddr, has_tokens: bool) -> Result<(), ServerError> {
    if has_tokens || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ServerError::UnprotectedListen { addr })
    }
}

/// Tokens from the configuration's `[server]` table, secrets read from the environment now.
pub fn tokens_from_config(
    server: &instore_config::ServerConfig,
) -> Result<Vec<ApiToken>, instore_config::ConfigError> {
    Ok(server
        .resolve_tokens()?
        .into_iter()
        .map(|(token, role)| ApiToken {
            token,
            role: role.into(),
        })
        .collect())
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn metrics_text(State(state): State<Arc<AppState>>, _: auth::Caller) -> Response {
    let text = metrics::render(&state).await;
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such page or endpoint: {}; the API is under /api/v1 (see /openapi.json), the dashboard at /",
        uri.path()
    ))
}
