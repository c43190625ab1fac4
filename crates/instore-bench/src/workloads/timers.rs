//! `timers`: M instances are saved unlocked with durable timers falling due evenly over a few
//! seconds (system clock; the first two seconds after the start, so creation is done first). A
//! host — an owner of host type `bench-timers` with L loops, each with its own waiting handle —
//! does what a host does: `wait_for_events` → `TryLoadRunnable` until it finds nothing, handing
//! each loaded instance to a task that completes it. Lateness = the store clock when
//! `TryLoadRunnable` answered − the timer's due time.
//!
//! There is no raw SQLite equivalent; the reference is `tokio-sleep`: one task per timer
//! sleeping until its due time, i.e. the tokio timer's own lateness on this machine.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    bag, Clock, Command, InstanceId, InstanceStore, OwnerId, Save, SystemClock, Timestamp,
};
use tokio::task::JoinSet;

use super::{cmd_err, create_owner, RunCtx, COMMAND_TIMEOUT};
use crate::driver::{new_histogram, record, Sample};

const HOST_TYPE: &str = "bench-timers";
/// Time between the start and the first due timer, for creating the instances.
const LEAD: Duration = Duration::from_secs(2);
/// How long after the last due time the host keeps waiting for missing timers.
const GRACE: Duration = Duration::from_secs(10);
/// Concurrent creators (so a group-committing provider creates quickly).
const CREATORS: usize = 16;

/// What a host loop saw: the instance, its due time, when it was loaded.
type Seen = (InstanceId, Timestamp, Timestamp);

fn due_times(start: Timestamp, count: usize, spread: Duration) -> Vec<Timestamp> {
    (0..count)
        .map(|i| start.plus(spread.mul_f64(i as f64 / count as f64)))
        .collect()
}

pub async fn provider(store: &InstanceStore, loops: usize, ctx: &RunCtx) -> Result<Sample, String> {
    let owner = create_owner(store, HOST_TYPE).await?;
    let clock = store.clock();
    let count = ctx.timers.max(1);
    let dues = Arc::new(due_times(clock.now().plus(LEAD), count, ctx.timer_spread));
    let give_up = dues[count - 1].plus(GRACE);
    let seen = Arc::new(Mutex::new(Vec::<Seen>::with_capacity(count)));
    let remaining = Arc::new(AtomicUsize::new(count));

    let mut hosts = JoinSet::new();
    for _ in 0..loops.max(1) {
        hosts.spawn(host_loop(
            store.clone(),
            owner,
            seen.clone(),
            remaining.clone(),
            give_up,
        ));
    }

    let next = Arc::new(AtomicUsize::new(0));
    let late_created = Arc::new(Mutex::new(HashSet::new()));
    let mut creators = JoinSet::new();
    for _ in 0..CREATORS.min(count) {
        let (store, dues, next, late) = (
            store.clone(),
            dues.clone(),
            next.clone(),
            late_created.clone(),
        );
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&due) = dues.get(i) else {
                    return Ok::<(), String>(());
                };
                let id = InstanceId::new();
                let handle = store.create_handle_for(Some(owner), Some(id));
                let save = Save::data(bag([("n", i as i64)]))
                    .with_timer(due)
                    .and_unlock();
                store
                    .execute(&handle, save, COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("Save(timer)"))?;
                if store.clock().now() > due {
                    lock(&late).insert(id);
                }
            }
        });
    }
    let created = join_all(&mut creators).await;
    if created.is_err() {
        hosts.abort_all();
    }
    created?;
    join_all(&mut hosts).await?;

    let late = lock(&late_created);
    let seen = lock(&seen);
    let mut hist = new_histogram();
    let mut early = 0;
    for (instance, due, at) in seen.iter() {
        if late.contains(instance) {
            continue;
        }
        early += usize::from(at < due);
        record(&mut hist, at.since(*due));
    }
    let mut note = format!("lateness; {}/{count} timers seen", seen.len());
    if !late.is_empty() {
        note.push_str(&format!(", {} created after due (excluded)", late.len()));
    }
    if early > 0 {
        note.push_str(&format!(", {early} loaded BEFORE due"));
    }
    Ok(Sample {
        ops: hist.len(),
        elapsed: None,
        hist,
        note: Some(note),
        extras: Vec::new(),
    })
}

async fn host_loop(
    store: InstanceStore,
    owner: OwnerId,
    seen: Arc<Mutex<Vec<Seen>>>,
    remaining: Arc<AtomicUsize>,
    give_up: Timestamp,
) -> Result<(), String> {
    let clock = store.clock();
    let waiter = store.create_handle_for(Some(owner), None);
    let mut completions = JoinSet::new();
    while remaining.load(Ordering::Relaxed) > 0 && clock.now() < give_up {
        let events = store
            .wait_for_events(&waiter, Duration::from_millis(250))
            .await
            .map_err(cmd_err("wait_for_events"))?;
        if events.is_empty() {
            continue;
        }
        loop {
            let handle = store.create_handle_for(Some(owner), None);
            let view = store
                .execute(&handle, Command::TryLoadRunnable, COMMAND_TIMEOUT)
                .await
                .map_err(cmd_err("TryLoadRunnable"))?;
            let at = clock.now();
            let Some(instance) = view.instance else {
                break;
            };
            let due = view
                .timer
                .ok_or_else(|| format!("runnable instance {instance} has no timer"))?;
            lock(&seen).push((instance, due, at));
            remaining.fetch_sub(1, Ordering::Relaxed);
            let store = store.clone();
            completions.spawn(async move {
                let complete = Save {
                    complete: true,
                    unlock: true,
                    ..Save::default()
                };
                store
                    .execute(&handle, complete, COMMAND_TIMEOUT)
                    .await
                    .map(drop)
                    .map_err(cmd_err("Save(complete)"))
            });
        }
    }
    join_all(&mut completions).await
}

/// The floor: plain tokio sleeps until each due time.
pub async fn floor(ctx: &RunCtx) -> Result<Sample, String> {
    let clock = SystemClock;
    let count = ctx.timers.max(1);
    let dues = due_times(
        clock.now().plus(Duration::from_millis(200)),
        count,
        ctx.timer_spread,
    );
    let mut sleepers = JoinSet::new();
    for due in dues {
        sleepers.spawn(async move {
            SystemClock.sleep_until(due).await;
            SystemClock.now().since(due)
        });
    }
    let mut hist = new_histogram();
    while let Some(lateness) = sleepers.join_next().await {
        record(
            &mut hist,
            lateness.map_err(|e| format!("sleeper task: {e}"))?,
        );
    }
    Ok(Sample {
        ops: hist.len(),
        elapsed: None,
        hist,
        note: Some(format!("lateness; {count} plain tokio sleeps")),
        extras: Vec::new(),
    })
}

async fn join_all(set: &mut JoinSet<Result<(), String>>) -> Result<(), String> {
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        let r = r.map_err(|e| format!("task: {e}")).and_then(|r| r);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
