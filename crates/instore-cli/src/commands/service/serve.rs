//! `instore serve`: the HTTP server (JSON API, OpenAPI, metrics, dashboard) with the management
//! service, in the foreground until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use instore_management::EndpointRegistry;
use instore_server::Server;
use tokio_util::sync::CancellationToken;

use super::demo;
use crate::context::Context;
use crate::failure::{chain, Failure};
use crate::render;

/// Where `serve` listens without `--listen` or `[server] listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, clap::Args)]
#[command(
    about = "Serve the HTTP API, the dashboard and metrics, and run the management service, until Ctrl-C",
    long_about = "Serve the store over HTTP until Ctrl-C: the JSON API under /api/v1 (described at \
        /openapi.json), the dashboard at /, Prometheus metrics at /metrics; and run the management \
        service beside it (as `instore manage` does). Bearer tokens come from the configuration's \
        [[server.tokens]] (roles reader and admin); without tokens only loopback addresses are \
        served. Applies pending schema migrations on start.",
    after_help = "Examples:\n  \
        instore serve --demo                 # sample workflows on ./instore.db\n  \
        instore serve\n  \
        instore serve --listen 127.0.0.1:9000\n  \
        instore --store shared serve --listen 0.0.0.0:8080   # needs [[server.tokens]]"
)]
pub struct Args {
    /// Address and port to listen on [default: [server] listen, else 127.0.0.1:8080; port 0 picks a free one]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Also run demo hosts with sample order and invoice workflows (timers, bookmarks resumed
    /// by key, some failing and suspended, some held for review), so the dashboard is alive at
    /// once. They write demo instances into the store; use it on a scratch store
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    init_logging();
    // Before anything runs, so every command of this process is measured.
    instore_server::recorder();
    let server_config = ctx.config.server();
    let tokens = instore_server::tokens_from_config(server_config)?;
    let listen = match (args.listen, server_config.listen) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => DEFAULT_LISTEN
            .parse()
            .map_err(|e| Failure::runtime(format!("bad default address: {e}")))?,
    };
    instore_server::check_listen(listen, !tokens.is_empty())
        .map_err(|e| Failure::usage(chain(&e)))?;

    let opened = if args.demo {
        ctx.open_creating().await?
    } else {
        ctx.open_migrating().await?
    };
    let store = opened.store.clone();
    let (name, url) = (opened.name.clone(), opened.url.clone());
    // Hosts started in this process register their control endpoints here, so the management
    // service reaches them without HTTP.
    let registry = Arc::new(EndpointRegistry::new());

    let demo = if args.demo {
        let demo = demo::Demo::start(
            store.clone(),
            opened.providers.query.clone(),
            opened.providers.control.clone(),
            (*registry).clone(),
        )
        .await
        .map_err(|e| Failure::runtime(format!("cannot start the demo hosts: {}", chain(&e))))?;
        Some(demo)
    } else {
        None
    };

    let server = Server::builder(opened)
        .tokens(tokens)
        .endpoints(registry)
        .build()
        .map_err(|e| Failure::usage(format!("store '{name}': {}", chain(&e))))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("cannot read the bound address: {e}")))?;
    let base = format!("http://{bound}/");
    if ctx.json {
        render::json(&serde_json::json!({ "url": base, "store": name }));
    } else {
        render::out(&base);
        eprintln!(
            "Serving store '{name}' ({url}) at {base} — dashboard /, API /api/v1, OpenAPI \
             /openapi.json, metrics /metrics. Ctrl-C stops."
        );
    }

    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));
    let stop = shutdown.clone();
    tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.map_err(|e| Failure::runtime(format!("cannot wait for Ctrl-C: {e}")))?;
        }
        _ = stop.cancelled() => {}
    }
    shutdown.cancel();
    let served = serving
        .await
        .map_err(|e| Failure::runtime(format!("the server failed: {e}")))?;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    store.shutdown().await;
    served.map_err(|e| Failure::runtime(chain(&e)))
}

/// Logs to stderr; `RUST_LOG` chooses what (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
