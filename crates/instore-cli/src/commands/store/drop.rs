//! `instore store drop`: remove the store and everything in it.

use crate::context::Context;
use crate::failure::Failure;
use crate::prompt;

use super::report;

#[derive(Debug, clap::Args)]
#[command(
    about = "Remove the store (its SQLite file or PostgreSQL schema) with every instance in it",
    long_about = "Remove the store's storage — the SQLite file with its WAL, or the PostgreSQL \
        schema — and every instance, owner and queued command in it. Hosts still using it lose \
        it. Asks for confirmation; --yes skips the question (and is needed without a terminal). \
        A file that is not an instore database is refused unchanged.",
    after_help = "Examples:\n  \
        instore store drop\n  \
        instore --store scratch store drop --yes"
)]
pub struct Args {
    /// Go ahead without asking for confirmation (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.store_config()?;
    prompt::confirm(
        &format!(
            "Drop store '{}' ({}) with everything in it?",
            store.name, store.url
        ),
        args.yes,
    )?;
    let report = instore_config::drop_store(store).await?;
    report::print(ctx, &report);
    Ok(())
}
