//! `instore instances show ID`: everything the store knows about one instance.

use instore::{InstanceFilter, InstanceId, InstanceInfo, PageRequest};
use instore_config::json;

use crate::context::Context;
use crate::failure::Failure;
use crate::filter;
use crate::render::{self, opt, opt_time, time};

#[derive(Debug, clap::Args)]
#[command(
    about = "Show one instance: status, owner, lock, command queue, error log, why it is blocked",
    after_help = "Example:\n  instore instances show 0b6e4a3c-1f7e-4d6a-9d4b-1c2f3a4b5c6d"
)]
pub struct Args {
    /// The instance's id
    #[arg(value_name = "ID", value_parser = filter::instance_id)]
    pub id: InstanceId,
}

pub async fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open().await?;
    let filter = InstanceFilter {
        ids: vec![args.id],
        ..InstanceFilter::all()
    };
    let page = store
        .providers
        .query
        .query(&filter, &PageRequest::first(1))
        .await?;
    let Some(info) = page.items.into_iter().next() else {
        return Err(Failure::runtime(format!(
            "no instance {} in store '{}'",
            args.id, store.name
        )));
    };
    if ctx.json {
        render::json(&json::instance(&info));
    } else {
        render::out(&render::fields(rows(&info)).to_string());
    }
    Ok(())
}

fn rows(i: &InstanceInfo) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("id", i.id.to_string()),
        ("status", format!("{} ({})", i.status, i.condition)),
        ("blocked on", render::blocked_on(i.blocked_on.as_ref())),
        (
            "state",
            format!("{:?}, execution status {:?}", i.state, i.execution_status),
        ),
        ("host type", opt(i.host_type.as_deref())),
        ("machine", opt(i.machine.as_deref())),
        ("created", time(i.created_at)),
        (
            "updated",
            format!("{} by {}", time(i.updated_at), opt(i.updated_by.as_deref())),
        ),
    ];
    if let Some(owner) = i.owner {
        rows.push((
            "owner",
            format!(
                "{owner} on {}, lease ends {}",
                opt(i.owner_machine.as_deref()),
                opt_time(i.owner_lease_expires_at)
            ),
        ));
        rows.push(("locked since", opt_time(i.locked_since)));
    }
    rows.push(("lock version", i.lock_version.to_string()));
    if let Some(s) = &i.suspension {
        rows.push(("suspended", s.reason.clone()));
        if let Some(e) = &s.exception {
            rows.push(("exception", format!("{}: {}", e.name, e.message)));
        }
    }
    rows.push(("timer", opt_time(i.timer)));
    if !i.bookmarks.is_empty() {
        rows.push(("bookmarks", i.bookmarks.join(", ")));
    }
    if let Some(p) = &i.pending_command {
        rows.push((
            "queued command",
            format!(
                "{} (enqueued {}, {} failed attempts{})",
                p.command,
                time(p.enqueued_at),
                p.attempts,
                p.locked_until
                    .map(|t| format!(", being executed until {}", time(t)))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(e) = &i.error {
        rows.push((
            "error log",
            format!(
                "{} given up after {} attempts: {} ({}) on {} at {}",
                e.command,
                e.attempts,
                e.message,
                e.code,
                e.machine,
                time(e.last_attempt_at)
            ),
        ));
    }
    for (key, state) in &i.keys {
        rows.push(("key", format!("{key} ({state:?})")));
    }
    for (name, value) in &i.promoted {
        rows.push(("promoted", format!("{name} = {value}")));
    }
    for (name, value) in &i.metadata {
        rows.push(("metadata", format!("{name} = {}", value.value)));
    }
    rows
}
