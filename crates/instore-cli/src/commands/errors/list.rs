//! `instore errors list`: the error log, newest attempt first.

use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::render::{self, time};

#[derive(Debug, clap::Args)]
#[command(
    about = "List the error log: the last control command given up for each instance",
    long_about = "List the error log, newest attempt first: for each instance, the last control \
        command the management service gave up on (after its last allowed attempt), with the \
        error, the machine and the number of attempts. An entry goes away when a new command is \
        queued for the instance, or the instance is removed.",
    after_help = "Examples:\n  \
        instore errors list\n  \
        instore errors list --max 20 --json"
)]
pub struct Args {
    /// Most entries to show
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub max: u16,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let entries = store
        .providers
        .control
        .error_log(usize::from(args.max))
        .await?;
    if ctx.json {
        render::json(&serde_json::Value::Array(
            entries.iter().map(json::error_entry).collect(),
        ));
        return Ok(());
    }
    if entries.is_empty() {
        render::out("The error log is empty.");
        return Ok(());
    }
    let mut table = render::table([
        "INSTANCE",
        "COMMAND",
        "CODE",
        "MESSAGE",
        "LAST ATTEMPT",
        "MACHINE",
        "ATTEMPTS",
    ]);
    for e in &entries {
        table.add_row(vec![
            e.instance.to_string(),
            e.command.to_string(),
            e.code.clone(),
            e.message.clone(),
            time(e.last_attempt_at),
            e.machine.clone(),
            e.attempts.to_string(),
        ]);
    }
    render::out(&table.to_string());
    Ok(())
}
