//! `instore instances count`: how many instances match the filters.

use crate::context::Context;
use crate::failure::Failure;
use crate::filter::{self, FilterArgs};
use crate::render;

#[derive(Debug, clap::Args)]
#[command(
    about = "Count the instances matching the filters",
    after_help = "Examples:\n  \
        instore instances count --status Running\n  \
        instore instances count --condition Exception --modified-after '1h ago' --json"
)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let filter = args.filter.to_filter()?;
    let store = ctx.open().await?;
    filter::warn_unpromoted(&filter, &store.settings.promotions);
    let count = store.providers.query.count(&filter).await?;
    if ctx.json {
        render::json(&serde_json::json!({ "count": count }));
    } else {
        render::out(&count.to_string());
    }
    Ok(())
}
