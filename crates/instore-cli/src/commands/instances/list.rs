//! `instore instances list`: the instances matching the filters, newest first, a page at a time.

use instore::{Cursor, PageRequest};
use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::filter::{self, FilterArgs};
use crate::render;

#[derive(Debug, clap::Args)]
#[command(
    about = "List instances matching the filters, newest first",
    long_about = "List instances matching the filters, newest first (creation time, then id). \
        Shows at most --max instances; when there are more, the cursor of the next page is \
        printed on stderr (and as \"next\" in --json output): pass it with --cursor.",
    after_help = "Examples:\n  \
        instore instances list --status Suspended --host-type orders\n  \
        instore instances list --created-after 2026-11-21 --where orders:total=42\n  \
        instore instances list --max 200 --json | jq -r '.items[].id'"
)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Most instances to show (1 to 1000)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max: u16,

    /// Start after this cursor (the "next" of the previous page)
    #[arg(long, value_parser = filter::cursor)]
    pub cursor: Option<Cursor>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let filter = args.filter.to_filter()?;
    let store = ctx.open().await?;
    filter::warn_unpromoted(&filter, &store.settings.promotions);
    let page = store
        .providers
        .query
        .query(
            &filter,
            &PageRequest {
                max: usize::from(args.max),
                cursor: args.cursor,
            },
        )
        .await?;
    if ctx.json {
        render::json(&json::page(&page));
        return Ok(());
    }
    if page.items.is_empty() {
        render::out("No instances match.");
        return Ok(());
    }
    let mut table = render::table([
        "ID",
        "STATUS",
        "CONDITION",
        "HOST TYPE",
        "MACHINE",
        "UPDATED",
        "BLOCKED ON",
    ]);
    for i in &page.items {
        table.add_row(vec![
            i.id.to_string(),
            i.status.to_string(),
            i.condition.to_string(),
            render::opt(i.host_type.as_deref()),
            render::opt(i.machine.as_deref()),
            render::time(i.updated_at),
            render::blocked_on(i.blocked_on.as_ref()),
        ]);
    }
    render::out(&table.to_string());
    if let Some(next) = page.next {
        eprintln!("More instances match: add --cursor {next} for the next page.");
    }
    Ok(())
}
