//! `instore instances group --by …`: counts of the matching instances per group.

use instore::GroupBy;
use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::filter::{self, FilterArgs};
use crate::render;

#[derive(Debug, clap::Args)]
#[command(
    about = "Count the instances matching the filters, per status, condition, host type, machine or exception",
    after_help = "Examples:\n  \
        instore instances group --by condition\n  \
        instore instances group --by exception --status Suspended --json"
)]
pub struct Args {
    /// Group by: status, condition, host-type, machine or exception
    #[arg(long, value_name = "FIELD", value_parser = filter::group_by)]
    pub by: GroupBy,

    #[command(flatten)]
    pub filter: FilterArgs,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let filter = args.filter.to_filter()?;
    let store = ctx.open().await?;
    filter::warn_unpromoted(&filter, &store.settings.promotions);
    let groups = store.providers.query.group_count(&filter, args.by).await?;
    if ctx.json {
        render::json(&serde_json::json!({
            "by": args.by.name(),
            "groups": groups.iter().map(json::group_count).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut table = render::table([args.by.name().to_uppercase().as_str(), "COUNT"]);
    for g in &groups {
        table.add_row(vec![
            g.key.clone().unwrap_or_else(|| "(none)".to_owned()),
            g.count.to_string(),
        ]);
    }
    let total: u64 = groups.iter().map(|g| g.count).sum();
    table.add_row(vec!["total".to_owned(), total.to_string()]);
    render::out(&table.to_string());
    Ok(())
}
