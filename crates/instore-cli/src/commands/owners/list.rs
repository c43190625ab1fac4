//! `instore owners list`: the instance owners registered with the store.

use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::render::{self, opt, time};

#[derive(Debug, clap::Args)]
#[command(
    about = "List the instance owners (host registrations) and whether their leases are alive",
    after_help = "Examples:\n  \
        instore owners list\n  \
        instore owners list --json"
)]
pub struct Args {}

pub async fn run(ctx: &Context, _args: Args) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let owners = store.providers.persistence.owners().await?;
    let now = store.providers.persistence.clock().now();
    if ctx.json {
        render::json(&serde_json::Value::Array(
            owners.iter().map(|o| json::owner(o, now)).collect(),
        ));
        return Ok(());
    }
    if owners.is_empty() {
        render::out("No owners are registered.");
        return Ok(());
    }
    let mut table = render::table([
        "ID",
        "HOST TYPE",
        "MACHINE",
        "CREATED",
        "LEASE ENDS",
        "ALIVE",
    ]);
    for o in &owners {
        table.add_row(vec![
            o.id.to_string(),
            opt(o.host_type.as_deref()),
            o.machine.clone(),
            time(o.created_at),
            time(o.lease_expires_at),
            if o.lease_expires_at > now {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ]);
    }
    render::out(&table.to_string());
    Ok(())
}
