//! `instore store init`: create the store's schema.

use crate::context::Context;
use crate::failure::Failure;

use super::report;

#[derive(Debug, clap::Args)]
#[command(
    about = "Create the store (its SQLite file or PostgreSQL schema) at the newest schema",
    long_about = "Create the store's storage — the SQLite file, or the PostgreSQL schema — at the \
        newest schema, if it is missing. An existing store is left as it is; one with an older \
        schema is reported with the command that upgrades it (instore store migrate).",
    after_help = "Examples:\n  \
        instore store init\n  \
        instore --store shared store init"
)]
pub struct Args {}

pub async fn run(ctx: &Context, _args: Args) -> Result<(), Failure> {
    let report = instore_config::init(ctx.store_config()?).await?;
    report::print(ctx, &report);
    Ok(())
}
