//! `instore purge`: delete completed instances older than the retention, in small batches.

use std::time::Duration;

use instore::{InstanceFilter, InstanceStatus};
use serde_json::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::filter;
use crate::prompt;
use crate::render;

#[derive(Debug, clap::Args)]
#[command(
    about = "Delete completed instances last changed longer ago than the retention, in small batches",
    long_about = "Delete completed instances last changed longer ago than --older-than (default: the \
        store's retention setting, 7 days unless configured), with everything that belongs to \
        them. Works in batches of --batch instances, each one short transaction, so hosts are \
        never held up for long.",
    after_help = "Examples:\n  \
        instore purge\n  \
        instore purge --older-than 30d --batch 1000"
)]
pub struct Args {
    /// Delete completed instances last changed longer ago than this [default: the store's retention]
    #[arg(long, value_name = "DURATION", value_parser = filter::duration)]
    pub older_than: Option<Duration>,

    /// Instances deleted per transaction (1 to 10000)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub batch: u16,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let config = ctx.store_config()?;
    let Some(age) = args.older_than.or(config.settings.retention) else {
        return Err(Failure::usage(format!(
            "store '{}' keeps completed instances (retention = \"never\"); pass --older-than to purge anyway",
            config.name
        )));
    };
    let store = ctx.open().await?;
    // Judged by the store's clock, as every time in the store is.
    let before = store.providers.persistence.clock().now().minus(age);
    let candidates = store
        .providers
        .query
        .count(&InstanceFilter {
            status: vec![InstanceStatus::Completed],
            modified_before: Some(before),
            ..InstanceFilter::all()
        })
        .await?;
    let bar = prompt::progress(candidates, "purging", ctx.json);
    let batch = usize::from(args.batch);
    let mut purged = 0u64;
    loop {
        let n = store.providers.query.purge_completed(before, batch).await?;
        purged += n;
        bar.inc(n);
        if n < batch as u64 {
            break;
        }
    }
    bar.finish_and_clear();
    if ctx.json {
        render::json(
            &json!({ "purged": purged, "before": instore_config::json::timestamp(before) }),
        );
    } else {
        render::out(&format!(
            "Purged {purged} completed instance(s) last changed before {}.",
            render::time(before)
        ));
    }
    Ok(())
}
