//! `instore store list`: the stores the configuration names.

use serde_json::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::render;

#[derive(Debug, clap::Args)]
#[command(
    about = "List the configured stores, their URLs, and which one is the default",
    after_help = "Examples:\n  \
        instore store list\n  \
        instore --config /etc/instore.toml store list --json"
)]
pub struct Args {}

pub async fn run(ctx: &Context, _args: Args) -> Result<(), Failure> {
    let default = ctx.config.default_name();
    if ctx.json {
        render::json(&json!({
            "origin": ctx.config.origin().to_string(),
            "default": default,
            "stores": ctx.config.stores().map(|s| json!({
                "name": s.name,
                "url": s.url,
                "default": Some(s.name.as_str()) == default,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut table = render::table(["STORE", "URL", "DEFAULT"]);
    for s in ctx.config.stores() {
        let mark = if Some(s.name.as_str()) == default {
            "yes"
        } else {
            ""
        };
        table.add_row(vec![s.name.clone(), s.url.clone(), mark.to_owned()]);
    }
    render::out(&table.to_string());
    eprintln!("From {}.", ctx.config.origin());
    Ok(())
}
