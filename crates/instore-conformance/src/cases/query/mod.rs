//! SPEC §12: the query provider (decision 0007) — one case per filter field, each with
//! instances that must not match; counts that agree with queries (every case checks it);
//! group counts; keyset pages (`pages.rs`); `InstanceInfo`, `blocked_on` and the retention purge
//! (`info.rs`). Instances are set up through the store runtime, so its promotion computation
//! is exercised too.
//!
//! | rule (SPEC §12, decision 0007) | cases |
//! |---|---|
//! | filter: status (any of) | `the_status_filter_matches_any_of_the_given_statuses` |
//! | filter: condition (any of), from the last execution status and suspension | `the_condition_filter_matches_each_of_the_eight_conditions` |
//! | filter: created range `after <= t < before` | `the_created_range_filter_matches_creation_times_in_the_half_open_range` |
//! | filter: modified range; every save changes it, loads and unlocks do not | `the_modified_range_filter_follows_saves_but_not_loads` |
//! | filter: exception name of the current suspension | `the_exception_filter_matches_the_current_suspensions_exception_name` |
//! | filter: machine — the live holder's, else the last writer's | `the_machine_filter_uses_the_live_holders_machine_else_the_last_writers` |
//! | filter: host type | `the_host_type_filter_matches_the_instances_host_type` |
//! | filter: owner (the lock owner, alive or not) | `the_owner_filter_matches_the_lock_owner_alive_or_dead` |
//! | filter: ids (any of) | `the_ids_filter_matches_any_of_the_given_ids` |
//! | filter: key (associated or completed) | `the_key_filter_matches_associated_and_completed_keys` |
//! | filter: promoted values, compared as text; replaced by each save with data | `the_promoted_filter_compares_promoted_values_as_text` |
//! | filter: has pending command | `the_pending_command_filter_matches_instances_with_a_queued_command` |
//! | filter: has error-log entry | `the_error_filter_matches_instances_with_an_error_log_entry` |
//! | count agrees with query | every filter case (`find`) |
//! | group counts: 5 groupings, empty groups left out, ordered by key (`None` first), filtered | `group_count_by_status_counts_each_status`, `group_count_by_condition_counts_each_condition`, `group_count_by_host_type_puts_instances_without_one_first`, `group_count_by_machine_uses_the_derived_machine`, `group_count_by_exception_counts_suspensions_by_exception_name` |
//! | keyset pages, newest first; later pages never shift; bad cursor/page size → `Invalid`; default 50 | `pages::*` |
//! | `InstanceInfo` fields, `blocked_on`, purge | `info::*` |
//! | the runnable backlog per host type (SPEC §8) | `backlog::*` |

mod backlog;
mod info;
mod pages;

pub use backlog::*;
pub use info::*;
pub use pages::*;

use std::time::Duration;

use instore::{
    bag, CommandFailure, Condition, ControlCommand, ExceptionInfo, ExecutionStatus, GroupBy,
    GroupCount, InstanceFilter, InstanceHandle, InstanceId, InstanceInfo, InstanceStatus,
    InstanceStore, KeyId, Load, OwnerId, PageRequest, QueueSettings, Save, StoreSettings,
    SuspendChange, Value, MAX_PAGE_SIZE,
};

use crate::harness::*;

/// The filter that matches everything, to narrow with `..all()`.
fn all() -> InstanceFilter {
    InstanceFilter::all()
}

/// The ids matching `filter` (one page of up to 1,000), sorted; checks that `count` agrees.
async fn find(env: &Env, filter: InstanceFilter) -> Vec<InstanceId> {
    let page = env
        .query()
        .query(&filter, &PageRequest::first(MAX_PAGE_SIZE))
        .await
        .expect("query");
    assert_eq!(page.next, None, "one page holds every match");
    let ids: Vec<InstanceId> = page.items.iter().map(|i| i.id).collect();
    let count = env.query().count(&filter).await.expect("count");
    assert_eq!(
        count,
        ids.len() as u64,
        "count agrees with query for {filter:?}"
    );
    sorted(ids)
}

fn sorted(mut ids: Vec<InstanceId>) -> Vec<InstanceId> {
    ids.sort();
    ids
}

/// The instance as queries show it.
async fn info(env: &Env, id: InstanceId) -> InstanceInfo {
    let filter = InstanceFilter {
        ids: vec![id],
        ..all()
    };
    let mut page = env
        .query()
        .query(&filter, &PageRequest::default())
        .await
        .expect("query");
    assert_eq!(page.items.len(), 1, "instance {id} is found");
    page.items.remove(0)
}

/// Runs `save` on a new instance; returns its id.
async fn saved(store: &InstanceStore, owner: OwnerId, save: Save) -> InstanceId {
    let id = InstanceId::new();
    ok(store, owner, Some(id), save).await;
    id
}

/// A save with data that leaves the instance unlocked.
fn idle() -> Save {
    Save::data(data(1)).and_unlock()
}

/// A save with data that completes the instance with execution status `status`.
fn completed(status: ExecutionStatus) -> Save {
    Save::data(data(1)).with_status(status).and_complete()
}

/// A save with data that suspends (with an exception named `exception`, if any) and unlocks.
fn suspended(exception: Option<&str>) -> Save {
    Save {
        suspend: SuspendChange::Suspend {
            reason: "stopped by test".into(),
            exception: exception.map(|name| ExceptionInfo {
                name: name.into(),
                message: format!("{name} happened"),
            }),
        },
        ..idle()
    }
}

/// Enqueues `Resume` for `id`, reads it and fails it with `max_attempts` 1: `id` gets an
/// error-log entry.
async fn give_up(env: &Env, id: InstanceId) {
    env.control()
        .enqueue(id, ControlCommand::Resume)
        .await
        .expect("enqueue");
    let batch = env
        .control()
        .read_batch(&QueueSettings::default(), "mgmt")
        .await
        .expect("read_batch");
    let read = batch
        .into_iter()
        .find(|c| c.instance == id)
        .expect("the command is read");
    let once = QueueSettings {
        max_attempts: 1,
        ..QueueSettings::default()
    };
    let failure = CommandFailure {
        code: "instance_locked".into(),
        message: "held elsewhere".into(),
        machine: "mgmt".into(),
    };
    env.control()
        .abandon(id, read.lock, failure, &once)
        .await
        .expect("abandon");
}

/// SPEC §12: the status filter matches any of the given statuses (uninitialized instances are
/// running); no status matches all.
pub async fn the_status_filter_matches_any_of_the_given_statuses(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let running = saved(&store, owner, idle()).await;
    let uninitialized = saved(&store, owner, Save::default().and_unlock()).await;
    let susp = saved(&store, owner, suspended(Some("PaymentDeclined"))).await;
    let done = saved(&store, owner, completed(ExecutionStatus::Closed)).await;
    let by = |status: Vec<InstanceStatus>| InstanceFilter { status, ..all() };
    use InstanceStatus::*;
    assert_eq!(
        find(env, by(vec![Running])).await,
        sorted(vec![running, uninitialized])
    );
    assert_eq!(find(env, by(vec![Suspended])).await, vec![susp]);
    assert_eq!(find(env, by(vec![Completed])).await, vec![done]);
    assert_eq!(
        find(env, by(vec![Suspended, Completed])).await,
        sorted(vec![susp, done])
    );
    assert_eq!(
        find(env, by(vec![])).await,
        sorted(vec![running, uninitialized, susp, done])
    );
}

/// SPEC §12, decision 0007: each of the eight conditions matches exactly its instance; lists
/// are any-of; conditions and statuses narrow together.
pub async fn the_condition_filter_matches_each_of_the_eight_conditions(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let executing = Save::data(data(1))
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    let mut by_condition = vec![
        (Condition::Active, saved(&store, owner, executing).await),
        (Condition::Idle, saved(&store, owner, idle()).await),
        (
            Condition::Exception,
            saved(&store, owner, suspended(Some("Timeout"))).await,
        ),
        (
            Condition::UserSuspension,
            saved(&store, owner, suspended(None)).await,
        ),
    ];
    for (condition, status) in [
        (Condition::Successful, ExecutionStatus::Closed),
        (Condition::Terminated, ExecutionStatus::Terminated),
        (Condition::Canceled, ExecutionStatus::Canceled),
        (Condition::Faulted, ExecutionStatus::Faulted),
    ] {
        by_condition.push((condition, saved(&store, owner, completed(status)).await));
    }
    let by = |condition: Vec<Condition>| InstanceFilter { condition, ..all() };
    for (condition, id) in &by_condition {
        assert_eq!(
            find(env, by(vec![*condition])).await,
            vec![*id],
            "{condition}"
        );
        assert_eq!(info(env, *id).await.condition, *condition);
    }
    let active_or_idle = sorted(vec![by_condition[0].1, by_condition[1].1]);
    assert_eq!(
        find(env, by(vec![Condition::Active, Condition::Idle])).await,
        active_or_idle
    );
    let contradiction = InstanceFilter {
        status: vec![InstanceStatus::Running],
        condition: vec![Condition::Exception],
        ..all()
    };
    assert_eq!(find(env, contradiction).await, vec![]);
}

/// SPEC §12, decision 0007: the created range is `after <= created_at < before`.
pub async fn the_created_range_filter_matches_creation_times_in_the_half_open_range(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let t0 = env.now();
    let a = saved(&store, owner, idle()).await;
    env.clock.advance(Duration::from_secs(10));
    let t1 = env.now();
    let b = saved(&store, owner, idle()).await;
    env.clock.advance(Duration::from_secs(10));
    let t2 = env.now();
    let c = saved(&store, owner, idle()).await;
    let range = |after, before| InstanceFilter {
        created_after: after,
        created_before: before,
        ..all()
    };
    assert_eq!(find(env, range(Some(t1), None)).await, sorted(vec![b, c]));
    assert_eq!(find(env, range(None, Some(t1))).await, vec![a]);
    assert_eq!(find(env, range(Some(t1), Some(t2))).await, vec![b]);
    assert_eq!(
        find(env, range(Some(t0), Some(t2))).await,
        sorted(vec![a, b])
    );
    let between = range(Some(t0.plus(Duration::from_secs(1))), Some(t1));
    assert_eq!(find(env, between).await, vec![]);
}

/// SPEC §12, decision 0007: the modified range filters on `updated_at`, which every save moves
/// (with or without data) and loads and unlocks do not.
pub async fn the_modified_range_filter_follows_saves_but_not_loads(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let t0 = env.now();
    let (a, b) = (
        saved(&store, owner, idle()).await,
        saved(&store, owner, idle()).await,
    );
    env.clock.advance(Duration::from_secs(10));
    let t1 = env.now();
    let metadata_only = Save {
        metadata_changes: vec![set("note", "touched")],
        ..Save::default()
    };
    ok(&store, owner, Some(a), metadata_only.and_unlock()).await;
    env.clock.advance(Duration::from_secs(10));
    let (other, reader) = other_host(env, None).await;
    let h = env.handle(&other, reader, Some(b));
    ok_on(&other, &h, Load::default()).await;
    drop(h); // unlocks in the background: not a change either

    let range = |after, before| InstanceFilter {
        modified_after: after,
        modified_before: before,
        ..all()
    };
    assert_eq!(find(env, range(Some(t1), None)).await, vec![a]);
    assert_eq!(find(env, range(None, Some(t1))).await, vec![b]);
    assert_eq!(find(env, range(Some(t0), None)).await, sorted(vec![a, b]));
    assert_eq!(
        (info(env, a).await.updated_at, info(env, b).await.updated_at),
        (t1, t0)
    );
}

/// SPEC §12, decision 0007: the exception filter matches the exception name of the current
/// suspension — not a suspension without one, not a resumed instance's old one.
pub async fn the_exception_filter_matches_the_current_suspensions_exception_name(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let declined = saved(&store, owner, suspended(Some("PaymentDeclined"))).await;
    let timeout = saved(&store, owner, suspended(Some("Timeout"))).await;
    saved(&store, owner, suspended(None)).await;
    saved(&store, owner, idle()).await;
    let resumed = saved(&store, owner, suspended(Some("PaymentDeclined"))).await;
    let resume = Save {
        suspend: SuspendChange::Unsuspend,
        ..Save::default()
    };
    ok(&store, owner, Some(resumed), resume.and_unlock()).await;
    let by = |name: &str| InstanceFilter {
        exception: Some(name.into()),
        ..all()
    };
    assert_eq!(find(env, by("PaymentDeclined")).await, vec![declined]);
    assert_eq!(find(env, by("Timeout")).await, vec![timeout]);
    assert_eq!(find(env, by("Unknown")).await, vec![]);
}

/// SPEC §12, decision 0007: the machine filter uses the live lock holder's machine, else the
/// last writer's (`updated_by`) — so when the holder's lease ends, its instance moves back to
/// the machine that wrote it last.
pub async fn the_machine_filter_uses_the_live_holders_machine_else_the_last_writers(env: &Env) {
    let host_a = env.store_on("machine-a", env.settings());
    let host_b = env.store_on("machine-b", env.settings());
    let (a, b) = (
        env.owner(&host_a, None).await,
        env.owner(&host_b, None).await,
    );
    let written_by_a = saved(&host_a, a, idle()).await;
    let held_by_b = saved(&host_a, a, idle()).await;
    let written_by_b = saved(&host_a, a, idle()).await;
    let hb = env.handle(&host_b, b, Some(held_by_b));
    ok_on(&host_b, &hb, Load::default()).await;
    ok(&host_b, b, Some(written_by_b), idle()).await;

    let on = |machine: &str| InstanceFilter {
        machine: Some(machine.into()),
        ..all()
    };
    assert_eq!(find(env, on("machine-a")).await, vec![written_by_a]);
    assert_eq!(
        find(env, on("machine-b")).await,
        sorted(vec![held_by_b, written_by_b])
    );
    assert_eq!(find(env, on("machine-c")).await, vec![]);

    // Host B crashes: its lease ends, and its held instance is on its last writer's machine.
    host_b.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    assert_eq!(
        find(env, on("machine-a")).await,
        sorted(vec![written_by_a, held_by_b])
    );
    assert_eq!(find(env, on("machine-b")).await, vec![written_by_b]);
    drop(hb);
}

/// SPEC §12: the host type filter matches the host type instances took from the owners that
/// locked them.
pub async fn the_host_type_filter_matches_the_instances_host_type(env: &Env) {
    let store = env.store();
    let orders = env.owner(&store, Some("orders")).await;
    let billing = env.owner(&store, Some("billing")).await;
    let untyped = env.owner(&store, None).await;
    let o = saved(&store, orders, idle()).await;
    let b = saved(&store, billing, idle()).await;
    saved(&store, untyped, idle()).await;
    let of = |host_type: &str| InstanceFilter {
        host_type: Some(host_type.into()),
        ..all()
    };
    assert_eq!(find(env, of("orders")).await, vec![o]);
    assert_eq!(find(env, of("billing")).await, vec![b]);
    assert_eq!(find(env, of("shipping")).await, vec![]);
}

/// SPEC §12, decision 0007: the owner filter matches the lock owner — alive, or dead and still
/// named by the lock; unlocked instances match no owner.
pub async fn the_owner_filter_matches_the_lock_owner_alive_or_dead(env: &Env) {
    let store = env.store();
    let crashing = env.store();
    let (o1, o2) = (
        env.owner(&store, None).await,
        env.owner(&crashing, None).await,
    );
    let (_h1, held_by_o1) = lock_new(&store, o1).await;
    let (_h2, held_by_o2) = lock_new(&crashing, o2).await;
    saved(&store, o1, idle()).await;
    let by = |owner: OwnerId| InstanceFilter {
        owner: Some(owner),
        ..all()
    };
    assert_eq!(find(env, by(o1)).await, vec![held_by_o1]);
    assert_eq!(find(env, by(o2)).await, vec![held_by_o2]);
    assert_eq!(find(env, by(OwnerId::new())).await, vec![]);

    crashing.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    assert_eq!(
        find(env, by(o2)).await,
        vec![held_by_o2],
        "a dead owner still holds its lock"
    );
}

/// SPEC §12: the ids filter matches any of the given ids (unknown ids match nothing).
pub async fn the_ids_filter_matches_any_of_the_given_ids(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let a = saved(&store, owner, idle()).await;
    saved(&store, owner, idle()).await;
    let c = saved(&store, owner, completed(ExecutionStatus::Closed)).await;
    let ids = InstanceFilter {
        ids: vec![a, c, InstanceId::new()],
        ..all()
    };
    assert_eq!(find(env, ids).await, sorted(vec![a, c]));
    let narrowed = InstanceFilter {
        ids: vec![a, c],
        status: vec![InstanceStatus::Completed],
        ..all()
    };
    assert_eq!(find(env, narrowed).await, vec![c]);
}

/// SPEC §12, decision 0007: the key filter matches an instance by an associated or completed
/// key; a freed key matches nothing.
pub async fn the_key_filter_matches_associated_and_completed_keys(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (associated, completed_key, freed) = (KeyId::new(), KeyId::new(), KeyId::new());
    let save = Save {
        keys_to_associate: vec![associated.into()],
        ..idle()
    };
    let a = saved(&store, owner, save).await;
    let save = Save {
        keys_to_associate: vec![completed_key.into(), freed.into()],
        keys_to_complete: vec![completed_key, freed],
        keys_to_free: vec![freed],
        ..idle()
    };
    let b = saved(&store, owner, save).await;
    saved(&store, owner, idle()).await;
    let by = |key: KeyId| InstanceFilter {
        key: Some(key),
        ..all()
    };
    assert_eq!(find(env, by(associated)).await, vec![a]);
    assert_eq!(find(env, by(completed_key)).await, vec![b]);
    assert_eq!(find(env, by(freed)).await, vec![]);
    assert_eq!(find(env, by(KeyId::new())).await, vec![]);
}

/// SPEC §12 "Promotions", decision 0007: the store's promotion names project data values;
/// filters compare them as text (42, 42.0 and "42" all match "42"); every named pair must
/// match; values that are not promotable, or not named, are not promoted; a save with data
/// replaces the promoted set, a save without data keeps it.
pub async fn the_promoted_filter_compares_promoted_values_as_text(env: &Env) {
    let settings = StoreSettings {
        promotions: vec!["orders:total".into(), "orders:region".into()],
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let owner = env.owner(&store, None).await;
    let save = |data: instore::PropertyBag| Save::data(data).and_unlock();
    let int = saved(
        &store,
        owner,
        save(bag([
            ("orders:total", Value::Int(42)),
            ("orders:region", Value::from("eu")),
        ])),
    )
    .await;
    let float = saved(
        &store,
        owner,
        save(bag([
            ("orders:total", Value::Float(42.0)),
            ("orders:region", Value::from("us")),
        ])),
    )
    .await;
    let string = saved(&store, owner, save(bag([("orders:total", "42")]))).await;
    saved(&store, owner, save(bag([("orders:total", 43i64)]))).await;
    let bytes = saved(&store, owner, save(bag([("orders:total", vec![4u8, 2])]))).await;
    saved(&store, owner, save(bag([("other", 42i64)]))).await;
    let replaced = saved(&store, owner, save(bag([("orders:total", 42i64)]))).await;
    ok(
        &store,
        owner,
        Some(replaced),
        save(bag([("orders:total", 7i64)])),
    )
    .await;
    let kept = saved(&store, owner, save(bag([("orders:total", 42i64)]))).await;
    let metadata_only = Save {
        metadata_changes: vec![set("note", "x")],
        ..Save::default()
    };
    ok(&store, owner, Some(kept), metadata_only.and_unlock()).await;

    let by = |pairs: &[(&str, &str)]| InstanceFilter {
        promoted: pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..all()
    };
    assert_eq!(
        find(env, by(&[("orders:total", "42")])).await,
        sorted(vec![int, float, string, kept])
    );
    assert_eq!(
        find(env, by(&[("orders:total", "42"), ("orders:region", "eu")])).await,
        vec![int]
    );
    assert_eq!(find(env, by(&[("orders:region", "us")])).await, vec![float]);
    assert_eq!(
        find(env, by(&[("orders:total", "7")])).await,
        vec![replaced]
    );
    assert_eq!(find(env, by(&[("other", "42")])).await, vec![]);

    let shown = info(env, int).await.promoted;
    let want = [
        ("orders:region".to_string(), Value::from("eu")),
        ("orders:total".to_string(), Value::Int(42)),
    ];
    assert_eq!(shown, want.into_iter().collect());
    assert!(
        info(env, bytes).await.promoted.is_empty(),
        "bytes are not promoted"
    );
}

/// SPEC §12: `has_pending_command` matches instances with (or, `false`, without) a queued
/// control command, locked by a reader or not.
pub async fn the_pending_command_filter_matches_instances_with_a_queued_command(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (queued, read, none) = (
        saved(&store, owner, idle()).await,
        saved(&store, owner, idle()).await,
        saved(&store, owner, idle()).await,
    );
    env.control()
        .enqueue(read, ControlCommand::Cancel)
        .await
        .expect("enqueue");
    env.control()
        .read_batch(&QueueSettings::default(), "mgmt")
        .await
        .expect("read_batch");
    env.control()
        .enqueue(queued, ControlCommand::Resume)
        .await
        .expect("enqueue");
    let pending = |has| InstanceFilter {
        has_pending_command: Some(has),
        ..all()
    };
    assert_eq!(find(env, pending(true)).await, sorted(vec![queued, read]));
    assert_eq!(find(env, pending(false)).await, vec![none]);
}

/// SPEC §12: `has_error` matches instances with (or, `false`, without) an error-log entry; a
/// queued command is not an error.
pub async fn the_error_filter_matches_instances_with_an_error_log_entry(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (failed, queued, none) = (
        saved(&store, owner, idle()).await,
        saved(&store, owner, idle()).await,
        saved(&store, owner, idle()).await,
    );
    give_up(env, failed).await;
    env.control()
        .enqueue(queued, ControlCommand::Resume)
        .await
        .expect("enqueue");
    let errors = |has| InstanceFilter {
        has_error: Some(has),
        ..all()
    };
    assert_eq!(find(env, errors(true)).await, vec![failed]);
    assert_eq!(find(env, errors(false)).await, sorted(vec![queued, none]));
}

/// A population for the group counts: host A (`machine-a`, host type `orders`) wrote six
/// instances — idle, active, suspended with exception `PaymentDeclined`, suspended by a user,
/// completed, terminated — and one that host B (`machine-b`, no host type) now holds; host B
/// wrote one more, idle. Keep what it returns: the hosts, and the handle holding B's lock.
async fn population(env: &Env) -> (InstanceStore, InstanceStore, InstanceHandle, InstanceId) {
    let host_a = env.store_on("machine-a", env.settings());
    let host_b = env.store_on("machine-b", env.settings());
    let a = env.owner(&host_a, Some("orders")).await;
    let b = env.owner(&host_b, None).await;
    let executing = Save::data(data(1))
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    for save in [
        idle(),
        executing,
        suspended(Some("PaymentDeclined")),
        suspended(None),
        completed(ExecutionStatus::Closed),
        completed(ExecutionStatus::Terminated),
    ] {
        saved(&host_a, a, save).await;
    }
    let held = saved(&host_a, a, idle()).await;
    let h = env.handle(&host_b, b, Some(held));
    ok_on(&host_b, &h, Load::default()).await;
    saved(&host_b, b, idle()).await;
    (host_a, host_b, h, held)
}

fn groups(pairs: &[(Option<&str>, u64)]) -> Vec<GroupCount> {
    pairs
        .iter()
        .map(|(key, count)| GroupCount {
            key: key.map(str::to_owned),
            count: *count,
        })
        .collect()
}

async fn group(env: &Env, filter: InstanceFilter, by: GroupBy) -> Vec<GroupCount> {
    let counted = env
        .query()
        .group_count(&filter, by)
        .await
        .expect("group_count");
    let total: u64 = counted.iter().map(|g| g.count).sum();
    let count = env.query().count(&filter).await.expect("count");
    assert_eq!(total, count, "the groups add up to the count");
    counted
}

/// SPEC §12: group counts by status, ordered by name; empty groups are left out; the filter
/// narrows them.
pub async fn group_count_by_status_counts_each_status(env: &Env) {
    let _hosts = population(env).await;
    let want = groups(&[
        (Some("Completed"), 2),
        (Some("Running"), 4),
        (Some("Suspended"), 2),
    ]);
    assert_eq!(group(env, all(), GroupBy::Status).await, want);
    let untyped = InstanceFilter {
        machine: Some("machine-b".into()),
        ..all()
    };
    let want = groups(&[(Some("Running"), 2)]);
    assert_eq!(group(env, untyped, GroupBy::Status).await, want);
}

/// SPEC §12: group counts by condition (conditions without instances left out).
pub async fn group_count_by_condition_counts_each_condition(env: &Env) {
    let _hosts = population(env).await;
    let want = groups(&[
        (Some("Active"), 1),
        (Some("Exception"), 1),
        (Some("Idle"), 3),
        (Some("Successful"), 1),
        (Some("Terminated"), 1),
        (Some("UserSuspension"), 1),
    ]);
    assert_eq!(group(env, all(), GroupBy::Condition).await, want);
    let running = InstanceFilter {
        status: vec![InstanceStatus::Running],
        ..all()
    };
    let want = groups(&[(Some("Active"), 1), (Some("Idle"), 3)]);
    assert_eq!(group(env, running, GroupBy::Condition).await, want);
}

/// SPEC §12: group counts by host type, instances without one first (`None`).
pub async fn group_count_by_host_type_puts_instances_without_one_first(env: &Env) {
    let _hosts = population(env).await;
    let want = groups(&[(None, 1), (Some("orders"), 7)]);
    assert_eq!(group(env, all(), GroupBy::HostType).await, want);
    let completed = InstanceFilter {
        status: vec![InstanceStatus::Completed],
        ..all()
    };
    let want = groups(&[(Some("orders"), 2)]);
    assert_eq!(group(env, completed, GroupBy::HostType).await, want);
}

/// SPEC §12, decision 0007: group counts by the derived machine — the live holder's (host B
/// holds one instance host A wrote), else the last writer's.
pub async fn group_count_by_machine_uses_the_derived_machine(env: &Env) {
    let (_a, _b, _h, held) = population(env).await;
    let want = groups(&[(Some("machine-a"), 6), (Some("machine-b"), 2)]);
    assert_eq!(group(env, all(), GroupBy::Machine).await, want);
    let orders = InstanceFilter {
        host_type: Some("orders".into()),
        ..all()
    };
    let want = groups(&[(Some("machine-a"), 6), (Some("machine-b"), 1)]);
    assert_eq!(group(env, orders, GroupBy::Machine).await, want);
    assert_eq!(info(env, held).await.machine.as_deref(), Some("machine-b"));
}

/// SPEC §12: group counts by the suspension's exception name, instances without one first.
pub async fn group_count_by_exception_counts_suspensions_by_exception_name(env: &Env) {
    let _hosts = population(env).await;
    let want = groups(&[(None, 7), (Some("PaymentDeclined"), 1)]);
    assert_eq!(group(env, all(), GroupBy::Exception).await, want);
    let suspended = InstanceFilter {
        status: vec![InstanceStatus::Suspended],
        ..all()
    };
    let want = groups(&[(None, 1), (Some("PaymentDeclined"), 1)]);
    assert_eq!(group(env, suspended, GroupBy::Exception).await, want);
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! query_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            query::the_status_filter_matches_any_of_the_given_statuses
        );
        $crate::__case!(
            $make,
            query::the_condition_filter_matches_each_of_the_eight_conditions
        );
        $crate::__case!(
            $make,
            query::the_created_range_filter_matches_creation_times_in_the_half_open_range
        );
        $crate::__case!(
            $make,
            query::the_modified_range_filter_follows_saves_but_not_loads
        );
        $crate::__case!(
            $make,
            query::the_exception_filter_matches_the_current_suspensions_exception_name
        );
        $crate::__case!(
            $make,
            query::the_machine_filter_uses_the_live_holders_machine_else_the_last_writers
        );
        $crate::__case!(
            $make,
            query::the_host_type_filter_matches_the_instances_host_type
        );
        $crate::__case!(
            $make,
            query::the_owner_filter_matches_the_lock_owner_alive_or_dead
        );
        $crate::__case!($make, query::the_ids_filter_matches_any_of_the_given_ids);
        $crate::__case!(
            $make,
            query::the_key_filter_matches_associated_and_completed_keys
        );
        $crate::__case!(
            $make,
            query::the_promoted_filter_compares_promoted_values_as_text
        );
        $crate::__case!(
            $make,
            query::the_pending_command_filter_matches_instances_with_a_queued_command
        );
        $crate::__case!(
            $make,
            query::the_error_filter_matches_instances_with_an_error_log_entry
        );
        $crate::__case!($make, query::group_count_by_status_counts_each_status);
        $crate::__case!($make, query::group_count_by_condition_counts_each_condition);
        $crate::__case!(
            $make,
            query::group_count_by_host_type_puts_instances_without_one_first
        );
        $crate::__case!(
            $make,
            query::group_count_by_machine_uses_the_derived_machine
        );
        $crate::__case!(
            $make,
            query::group_count_by_exception_counts_suspensions_by_exception_name
        );
        $crate::query_pages_cases!($make);
        $crate::query_info_cases!($make);
        $crate::query_backlog_cases!($make);
    };
}
