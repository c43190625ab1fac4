//! SPEC §8, §12: the runnable backlog (`QueryProvider::runnable_backlog`) — per host type, how
//! many instances are runnable now and since when the oldest is, whether or not a live host of
//! the type exists (what `/metrics` shows as `instore_runnable_instances` and
//! `instore_runnable_oldest_age_seconds`).
//!
//! | rule | cases |
//! |---|---|
//! | counted: unlocked with a due timer (since its due time), unlocked and `Executing` (since its unlock), locked by an owner whose lease ended (since the end of its lease) — with a live host of the type or without | `runnable_backlog_counts_each_kind_of_runnable_instance_per_host_type` |
//! | left out: a future timer, suspended (unlocked or held by a dead owner), completed, idle without a timer, locked by a live owner | `runnable_backlog_counts_each_kind_of_runnable_instance_per_host_type` |
//! | per host type, `None` first; host types without runnable instances left out | `runnable_backlog_counts_each_kind_of_runnable_instance_per_host_type` |
//! | judged at the store's clock: moving it makes a timer count; a loaded instance leaves it | `runnable_backlog_follows_the_clock_and_loads` |

use std::time::Duration;

use instore::{
    ExecutionStatus, InstanceHandle, InstanceId, InstanceStore, OwnerId, RunnableBacklog, Save,
    Timestamp,
};

use super::{completed, idle, info, saved, suspended};
use crate::harness::*;

fn backlog(host_type: Option<&str>, count: u64, oldest_since: Timestamp) -> RunnableBacklog {
    RunnableBacklog {
        host_type: host_type.map(str::to_owned),
        count,
        oldest_since,
    }
}

async fn runnable_backlog(env: &Env) -> Vec<RunnableBacklog> {
    env.query()
        .runnable_backlog()
        .await
        .expect("runnable_backlog")
}

/// A save with data and a timer due at `at`, unlocking.
fn timed(at: Timestamp) -> Save {
    Save::data(data(1)).with_timer(at).and_unlock()
}

/// A save that suspends an `Executing` instance (unlocking it).
fn suspended_executing() -> Save {
    suspended(None).with_status(ExecutionStatus::Executing)
}

/// The world of both cases: an owner of `orders` died holding two instances (one suspended);
/// then, with live owners of `orders`, `billing`, `shipping` and one without a host type, one
/// instance of each kind, none of them loaded by the live hosts.
struct World {
    store: InstanceStore,
    orders: OwnerId,
    dead_held: InstanceId,
    lease_ended_at: Timestamp,
    saved_at: Timestamp,
    /// Kept, so that no background unlock frees them: the dead owner's two locks, and the live
    /// `orders` owner's `Executing` instance.
    _held: Vec<InstanceHandle>,
}

async fn world(env: &Env) -> World {
    let crashing = env.store();
    let dead = env.owner(&crashing, Some("orders")).await;
    let (dead_handle, dead_held) = lock_new(&crashing, dead).await;
    let dead_suspended = crashing.create_handle_for(Some(dead), Some(InstanceId::new()));
    let held_suspended = Save {
        unlock: false,
        ..suspended_executing()
    };
    ok_on(&crashing, &dead_suspended, held_suspended).await;
    crashing.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    let lease_ended_at = info(env, dead_held)
        .await
        .owner_lease_expires_at
        .expect("the dead owner is still registered: it holds locks");
    assert!(lease_ended_at <= env.now());

    let store = env.store();
    let orders = env.owner(&store, Some("orders")).await;
    let billing = env.owner(&store, Some("billing")).await;
    let shipping = env.owner(&store, Some("shipping")).await;
    let untyped = env.owner(&store, None).await;
    let saved_at = env.now();
    // Runnable: unlocked and executing, of three host types (one of them none).
    saved(&store, orders, executing()).await;
    saved(&store, billing, executing()).await;
    saved(&store, untyped, executing()).await;
    // Not runnable yet: timers due in 5 s (shipping) and 10 s (orders), and in an hour.
    saved(
        &store,
        shipping,
        timed(saved_at.plus(Duration::from_secs(5))),
    )
    .await;
    saved(
        &store,
        orders,
        timed(saved_at.plus(Duration::from_secs(10))),
    )
    .await;
    saved(
        &store,
        orders,
        timed(saved_at.plus(Duration::from_secs(3600))),
    )
    .await;
    // Never runnable: suspended, completed, idle without a timer, held by a live owner.
    saved(&store, orders, suspended_executing()).await;
    saved(
        &store,
        orders,
        completed(ExecutionStatus::Closed).with_timer(saved_at),
    )
    .await;
    saved(&store, orders, idle()).await;
    let held = store.create_handle_for(Some(orders), Some(InstanceId::new()));
    let executing_held = Save {
        unlock: false,
        ..executing()
    };
    ok_on(&store, &held, executing_held).await;
    World {
        store,
        orders,
        dead_held,
        lease_ended_at,
        saved_at,
        _held: vec![dead_handle, dead_suspended, held],
    }
}

/// SPEC §8: the backlog counts, per host type (`None` first), the instances that are unlocked
/// and `Executing` (since their unlock) or locked by a dead owner (since its lease ended) —
/// though live hosts of `orders` and `billing` exist — and leaves out timers not yet due,
/// suspended instances (unlocked, or held by the dead owner), completed ones, idle ones and one
/// a live owner holds; `shipping`, with nothing runnable, is not listed.
pub async fn runnable_backlog_counts_each_kind_of_runnable_instance_per_host_type(env: &Env) {
    assert_eq!(runnable_backlog(env).await, Vec::new(), "an empty store");
    let w = world(env).await;
    assert_eq!(
        runnable_backlog(env).await,
        vec![
            backlog(None, 1, w.saved_at),
            backlog(Some("billing"), 1, w.saved_at),
            backlog(Some("orders"), 2, w.lease_ended_at),
        ]
    );
}

/// SPEC §8: the backlog is judged at the store's clock — moving it past two timers makes them
/// count, each since its due time — and an instance a host loads leaves it (the oldest is then
/// the next one).
pub async fn runnable_backlog_follows_the_clock_and_loads(env: &Env) {
    let w = world(env).await;
    env.clock.advance(Duration::from_secs(10));
    assert_eq!(
        runnable_backlog(env).await,
        vec![
            backlog(None, 1, w.saved_at),
            backlog(Some("billing"), 1, w.saved_at),
            backlog(Some("orders"), 3, w.lease_ended_at),
            backlog(Some("shipping"), 1, w.saved_at.plus(Duration::from_secs(5))),
        ]
    );

    // The live orders host takes the instance runnable longest: the dead owner's.
    let (_taken, found) = try_load_runnable(&w.store, w.orders).await;
    assert_eq!(found, Some(w.dead_held));
    let orders = runnable_backlog(env)
        .await
        .into_iter()
        .find(|b| b.host_type.as_deref() == Some("orders"));
    assert_eq!(orders, Some(backlog(Some("orders"), 2, w.saved_at)));
}

#[doc(hidden)]
#[macro_export]
macro_rules! query_backlog_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            query::runnable_backlog_counts_each_kind_of_runnable_instance_per_host_type
        );
        $crate::__case!($make, query::runnable_backlog_follows_the_clock_and_loads);
    };
}
