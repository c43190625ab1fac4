//! What the control verbs share: choosing the instances (ids, or filters after a confirmation
//! showing the count, or `--all`), applying one control command to each with a progress bar, and
//! reporting every instance that failed (`CommandLocked`, `InstanceNotFound`, …) without
//! stopping at it.

use instore::{ControlCommand, InstanceFilter, InstanceId, PageRequest, MAX_PAGE_SIZE};
use instore_config::{json, OpenedStore};
use serde_json::json;

use crate::context::Context;
use crate::failure::{chain, Failure};
use crate::filter::{self, FilterArgs};
use crate::prompt;
use crate::render;

/// Which instances a control verb acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The instances, by id (or choose them with filters, or --all)
    #[arg(value_name = "ID", value_parser = filter::instance_id)]
    pub instances: Vec<InstanceId>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Act on every instance of the store (needed when neither ids nor filters are given)
    #[arg(long)]
    pub all: bool,

    /// Go ahead without asking for confirmation (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Applies `command` (queued, or `Delete` at once) to the instances `target` names.
pub async fn run(ctx: &Context, target: Target, command: ControlCommand) -> Result<(), Failure> {
    // The CLI calls Delete "remove".
    let verb = match command {
        ControlCommand::Delete => "Remove",
        ref c => c.name(),
    };
    let mut filter = target.filter.to_filter()?;
    let by_filter = !filter.is_empty();
    if target.all && (by_filter || !target.instances.is_empty()) {
        return Err(Failure::usage(
            "--all means every instance; leave out the ids and filters, or leave out --all",
        ));
    }
    if !target.all && !by_filter && target.instances.is_empty() {
        return Err(Failure::usage(format!(
            "name the instances to {}: give their ids, filters (see --help), or --all for every instance",
            verb.to_lowercase()
        )));
    }
    let store = ctx.open().await?;
    filter::warn_unpromoted(&filter, &store.settings.promotions);
    let ids = if by_filter || target.all {
        filter.ids.extend(target.instances.iter().copied());
        let count = store.providers.query.count(&filter).await?;
        if count == 0 {
            return report(ctx, &command, 0, &[], &[]);
        }
        prompt::confirm(
            &format!(
                "{verb} {count} instance(s) of store '{}' ({})?",
                store.name,
                render::filter(&filter)
            ),
            target.yes,
        )?;
        matching(&store, &filter).await?
    } else {
        let mut ids = target.instances.clone();
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        ids
    };

    let bar = prompt::progress(ids.len() as u64, verb, ctx.json);
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        let result = match &command {
            ControlCommand::Delete => store.providers.control.delete(*id).await,
            c => store.providers.control.enqueue(*id, c.clone()).await,
        };
        match result {
            Ok(()) => done.push(*id),
            Err(e) => {
                if !ctx.json {
                    bar.suspend(|| eprintln!("{id}: {}", chain(&e)));
                }
                failed.push((*id, e));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    report(ctx, &command, ids.len(), &done, &failed)
}

/// Every instance matching `filter`, read a page at a time before anything changes (so acting
/// on them never shifts the pages).
async fn matching(
    store: &OpenedStore,
    filter: &InstanceFilter,
) -> Result<Vec<InstanceId>, Failure> {
    let mut ids = Vec::new();
    let mut page = PageRequest::first(MAX_PAGE_SIZE);
    loop {
        let found = store.providers.query.query(filter, &page).await?;
        ids.extend(found.items.iter().map(|i| i.id));
        match found.next {
            Some(next) => page.cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

fn report(
    ctx: &Context,
    command: &ControlCommand,
    matched: usize,
    done: &[InstanceId],
    failed: &[(InstanceId, instore::StoreError)],
) -> Result<(), Failure> {
    if ctx.json {
        render::json(&json!({
            "command": json::command(command),
            "matched": matched,
            "done": done.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(id, e)| json!({
                "id": id.to_string(),
                "code": e.code(),
                "error": chain(e),
            })).collect::<Vec<_>>(),
        }));
    } else if matched == 0 {
        render::out("No instances match; nothing was changed.");
    } else if matches!(command, ControlCommand::Delete) {
        render::out(&format!("Removed {} instance(s).", done.len()));
    } else if !done.is_empty() {
        render::out(&format!(
            "Queued {command} for {} instance(s); the management service executes it.",
            done.len()
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "{} of {matched} instance(s) failed; see the messages above",
            failed.len(),
        )))
    }
}
