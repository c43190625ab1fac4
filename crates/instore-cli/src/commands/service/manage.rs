//! `instore manage`: run the management service in the foreground until Ctrl-C, or until the
//! control queue is empty with `--drain`.

use std::time::Duration;

use instore_management::ManagementService;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::failure::Failure;
use crate::render;

/// How often `--drain` looks whether the queue is empty.
const DRAIN_LOOK: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
#[command(
    about = "Run the management service: execute queued control commands until Ctrl-C (or --drain)",
    long_about = "Run the management service in the foreground: it reads the control queue in \
        batches and executes each command — through the control endpoint of the live host holding \
        the instance, or at the store level as its own owner — retries failures, writes the error \
        log, calls activation hooks and purges completed instances past the retention. Several \
        may run against one shared PostgreSQL store. `instore serve` runs the same service.",
    after_help = "Examples:\n  \
        instore manage\n  \
        instore resume --status suspended --yes && instore manage --drain"
)]
pub struct Args {
    /// Stop once the queue is empty instead of waiting for Ctrl-C
    #[arg(long)]
    pub drain: bool,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let opened = ctx.open().await?;
    let service = ManagementService::for_providers(opened.store.clone(), &opened.providers)
        .build()
        .map_err(|e| Failure::usage(format!("store '{}': {e}", opened.name)))?;
    let stats = service.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(service.run(stop.clone()));
    if !ctx.json {
        eprintln!(
            "Managing store '{}' ({}); {}.",
            opened.name,
            opened.url,
            if args.drain {
                "stopping when the queue is empty"
            } else {
                "Ctrl-C stops"
            }
        );
    }
    if args.drain {
        loop {
            tokio::time::sleep(DRAIN_LOOK).await;
            if opened.providers.control.queued(None, 1).await?.is_empty() {
                break;
            }
        }
    } else {
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| Failure::runtime(format!("cannot wait for Ctrl-C: {e}")))?;
    }
    stop.cancel();
    running
        .await
        .map_err(|e| Failure::runtime(format!("the management service failed: {e}")))?;
    let s = stats.snapshot();
    if ctx.json {
        render::json(&json!({
            "read": s.read, "completed": s.completed, "via_endpoint": s.via_endpoint,
            "failed": s.failed, "given_up": s.given_up, "purged": s.purged,
        }));
    } else {
        render::out(&format!(
            "{} command(s) executed ({} through host endpoints), {} failure(s), {} given up, {} instance(s) purged",
            s.completed, s.via_endpoint, s.failed, s.given_up, s.purged
        ));
    }
    opened.store.shutdown().await;
    Ok(())
}
