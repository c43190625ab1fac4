//! `instore commands list`: the control queue, oldest first.

use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::render::{self, opt, opt_time, time};

#[derive(Debug, clap::Args)]
#[command(
    about = "List the control commands waiting for the management service, oldest first",
    after_help = "Examples:\n  \
        instore commands list\n  \
        instore commands list --after 120 --max 500 --json"
)]
pub struct Args {
    /// Most commands to show
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub max: u16,

    /// Start after this queue position (the last POSITION of the previous listing)
    #[arg(long, value_name = "POSITION")]
    pub after: Option<u64>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let entries = store
        .providers
        .control
        .queued(args.after, usize::from(args.max))
        .await?;
    if ctx.json {
        render::json(&serde_json::Value::Array(
            entries.iter().map(json::queue_entry).collect(),
        ));
        return Ok(());
    }
    if entries.is_empty() {
        render::out("The control queue is empty.");
        return Ok(());
    }
    let mut table = render::table([
        "POSITION",
        "INSTANCE",
        "COMMAND",
        "ATTEMPTS",
        "ENQUEUED",
        "LOCKED UNTIL",
        "LAST ERROR",
    ]);
    for e in &entries {
        table.add_row(vec![
            e.position.to_string(),
            e.instance.to_string(),
            e.command.to_string(),
            e.attempts.to_string(),
            time(e.enqueued_at),
            opt_time(e.locked_until),
            opt(e.last_error.as_deref()),
        ]);
    }
    render::out(&table.to_string());
    Ok(())
}
