//! `instore store migrate`: bring the store's schema up to date.

use crate::context::Context;
use crate::failure::Failure;

use super::report;

#[derive(Debug, clap::Args)]
#[command(
    about = "Upgrade the store's schema to the newest this build knows (creating the store if missing)",
    after_help = "Examples:\n  \
        instore store migrate\n  \
        instore --store shared store migrate --json"
)]
pub struct Args {}

pub async fn run(ctx: &Context, _args: Args) -> Result<(), Failure> {
    let report = instore_config::migrate(ctx.store_config()?).await?;
    report::print(ctx, &report);
    Ok(())
}
