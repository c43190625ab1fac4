//! SPEC §12: what a query shows of an instance (`InstanceInfo`, decision 0007 "Instance fields
//! the query side adds"), why it is not moving (`blocked_on`, one case per reason), and the
//! retention purge.

use std::collections::BTreeMap;
use std::time::Duration;

use instore::{
    bag, BlockedOn, Condition, ControlCommand, ExceptionInfo, ExecutionStatus, InstanceFilter,
    InstanceId, InstanceState, InstanceStatus, InstanceValue, KeyId, KeyState, Load, LoadByKey,
    LoadRequest, LoadTarget, PageRequest, PendingCommand, QueueSettings, Save, StoreError,
    StoreSettings, Suspension, Value,
};

use super::{all, completed, find, give_up, idle, info, saved, sorted, suspended};
use crate::harness::*;

/// SPEC §12: `InstanceInfo` shows the stored fields — creation and last change (time and
/// machine), lock holder (id, machine, lease, since when), lock version, keys, promoted values,
/// the queued command, metadata with write-only values — and the derived status, condition,
/// machine and `blocked_on`; the error-log entry of an instance whose command was given up.
pub async fn instance_info_shows_every_field(env: &Env) {
    let settings = StoreSettings {
        promotions: vec!["total".into()],
        ..env.settings()
    };
    let store = env.store_on("machine-a", settings);
    let owner = env.owner(&store, Some("orders")).await;
    let (k1, k2) = (KeyId::new(), KeyId::new());
    let t0 = env.now();
    let h = store.create_handle_for(Some(owner), None);
    let view = ok_on(&store, &h, LoadByKey::or_create(k1)).await;
    let id = view.instance.expect("created");
    env.clock.advance(Duration::from_secs(5));
    let t1 = env.now();
    let due = t1.plus(Duration::from_secs(3600));
    let save = Save {
        metadata_changes: vec![
            set("site", "eu-1"),
            set("secret", InstanceValue::write_only("s3cret")),
        ],
        keys_to_associate: vec![k2.into()],
        keys_to_complete: vec![k2],
        bookmarks: vec!["approve".into()],
        ..Save::data(bag([("total", Value::Int(42)), ("note", Value::from("x"))])).with_timer(due)
    };
    ok_on(&store, &h, save).await;
    env.control()
        .enqueue(id, ControlCommand::Cancel)
        .await
        .expect("enqueue");

    let got = info(env, id).await;
    assert_eq!(got.id, id);
    assert_eq!(
        (got.status, got.condition, got.state, got.execution_status),
        (
            InstanceStatus::Running,
            Condition::Idle,
            InstanceState::Initialized,
            ExecutionStatus::Idle
        )
    );
    assert_eq!((got.created_at, got.updated_at), (t0, t1));
    assert_eq!(got.updated_by.as_deref(), Some("machine-a"));
    assert_eq!(
        (got.timer, got.bookmarks.clone()),
        (Some(due), vec!["approve".to_string()])
    );
    assert_eq!(got.suspension, None);
    assert_eq!(got.host_type.as_deref(), Some("orders"));
    let want_metadata = bag([
        ("site", InstanceValue::from("eu-1")),
        ("secret", InstanceValue::write_only("s3cret")),
    ]);
    assert_eq!(got.metadata, want_metadata, "write-only values included");
    assert_eq!(got.owner, Some(owner));
    assert_eq!(got.owner_machine.as_deref(), Some("machine-a"));
    assert!(got.owner_lease_expires_at.is_some_and(|t| t > env.now()));
    assert_eq!((got.locked_since, got.lock_version), (Some(t0), 1));
    let want_pending = PendingCommand {
        command: ControlCommand::Cancel,
        attempts: 0,
        enqueued_at: t1,
        locked_until: None,
        last_error: None,
    };
    assert_eq!(got.pending_command, Some(want_pending));
    assert_eq!(got.error, None);
    let want_promoted: BTreeMap<String, Value> = [("total".to_string(), Value::Int(42))].into();
    assert_eq!(
        got.promoted, want_promoted,
        "only promotion names are promoted"
    );
    let want_keys: BTreeMap<KeyId, KeyState> =
        [(k1, KeyState::Associated), (k2, KeyState::Completed)].into();
    assert_eq!(got.keys, want_keys);
    assert_eq!(got.machine.as_deref(), Some("machine-a"));
    let want_blocked = BlockedOn::LockedByLiveOwner {
        owner,
        machine: Some("machine-a".into()),
        since: Some(t0),
    };
    assert_eq!(got.blocked_on, Some(want_blocked));

    let read = env
        .control()
        .read_batch(&QueueSettings::default(), "mgmt")
        .await
        .expect("read_batch");
    let pending = info(env, id).await.pending_command.expect("still queued");
    assert_eq!(pending.locked_until, Some(read[0].locked_until));

    let failed = saved(&store, owner, idle()).await;
    give_up(env, failed).await;
    let entry = env.control().error_log(10).await.expect("error_log");
    assert_eq!(info(env, failed).await.error.as_ref(), entry.first());
}

/// Decision 0007: `created_at` is set once; `updated_at` and `updated_by` follow the creation,
/// then every save (with or without data, by any owner) — not loads, not unlocks.
pub async fn created_and_updated_follow_the_creation_and_every_save(env: &Env) {
    let host_a = env.store_on("machine-a", env.settings());
    let host_b = env.store_on("machine-b", env.settings());
    let (a, b) = (
        env.owner(&host_a, None).await,
        env.owner(&host_b, None).await,
    );
    let t0 = env.now();
    let id = InstanceId::new();
    let h = env.handle(&host_a, a, Some(id));
    ok_on(&host_a, &h, create()).await;
    let when = |i: &instore::InstanceInfo| (i.created_at, i.updated_at, i.updated_by.clone());
    let at = |t, m: &str| (t0, t, Some(m.to_string()));
    assert_eq!(when(&info(env, id).await), at(t0, "machine-a"), "created");

    env.clock.advance(Duration::from_secs(1));
    let t1 = env.now();
    ok_on(&host_a, &h, Save::data(data(1)).and_unlock()).await;
    assert_eq!(when(&info(env, id).await), at(t1, "machine-a"), "saved");

    env.clock.advance(Duration::from_secs(1));
    let hb = env.handle(&host_b, b, Some(id));
    ok_on(&host_b, &hb, Load::default()).await;
    assert_eq!(
        when(&info(env, id).await),
        at(t1, "machine-a"),
        "a load is no change"
    );

    env.clock.advance(Duration::from_secs(1));
    let t3 = env.now();
    let metadata_only = Save {
        metadata_changes: vec![set("note", "x")],
        ..Save::default()
    };
    ok_on(&host_b, &hb, metadata_only).await;
    assert_eq!(
        when(&info(env, id).await),
        at(t3, "machine-b"),
        "metadata-only save"
    );

    env.clock.advance(Duration::from_secs(1));
    ok_on(&host_b, &hb, Save::default().and_unlock()).await;
    let t4 = env.now();
    assert_eq!(
        when(&info(env, id).await),
        at(t4, "machine-b"),
        "a save that unlocks is a save"
    );
}

/// Decision 0007: `locked_since` is set when an owner takes a lock it did not hold (an unlocked
/// instance, or a dead owner's), kept while it holds it (saves, and a reclaim of its own lock),
/// and cleared on unlock.
pub async fn locked_since_is_set_when_an_owner_takes_the_lock_and_cleared_on_unlock(env: &Env) {
    let crashing = env.store();
    let a = env.owner(&crashing, None).await;
    let t0 = env.now();
    let (h, id) = lock_new(&crashing, a).await;
    env.clock.advance(Duration::from_secs(1));
    ok_on(&crashing, &h, Save::data(data(2))).await;
    assert_eq!(
        info(env, id).await.locked_since,
        Some(t0),
        "kept across saves"
    );

    env.clock.advance(Duration::from_secs(1));
    ok_on(&crashing, &h, Save::default().and_unlock()).await;
    assert_eq!(info(env, id).await.locked_since, None, "cleared on unlock");

    env.clock.advance(Duration::from_secs(1));
    let t3 = env.now();
    let h = env.handle(&crashing, a, Some(id));
    ok_on(&crashing, &h, Load::default()).await;
    assert_eq!(info(env, id).await.locked_since, Some(t3), "taken again");

    // The owner reclaims its own lock (as a new handle does after a freed one): kept.
    env.clock.advance(Duration::from_secs(1));
    let reclaim = LoadRequest {
        target: LoadTarget::Id {
            instance: id,
            accept_uninitialized: false,
        },
        held_version: None,
        busy: Vec::new(),
        guards: Default::default(),
    };
    env.provider.load(a, reclaim).await.expect("reclaim");
    assert_eq!(
        info(env, id).await.locked_since,
        Some(t3),
        "kept on reclaim"
    );

    // The owner dies; another takes the lock over.
    crashing.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    let store = env.store();
    let b = env.owner(&store, None).await;
    let t4 = env.now();
    let hb = env.handle(&store, b, Some(id));
    ok_on(&store, &hb, Load::default()).await;
    let got = info(env, id).await;
    assert_eq!(
        (got.owner, got.locked_since),
        (Some(b), Some(t4)),
        "taken over"
    );
    drop(h);
}

/// SPEC §12 `blocked_on`: a failing control command comes first — queued after a failure
/// (attempts, no message yet) or given up (the error-log entry's attempts and message) — even
/// over suspension.
pub async fn blocked_on_a_failing_command_says_how_often_it_failed(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let retrying = saved(&store, owner, suspended(Some("Timeout"))).await;
    env.control()
        .enqueue(retrying, ControlCommand::Resume)
        .await
        .expect("enqueue");
    let read = env
        .control()
        .read_batch(&QueueSettings::default(), "mgmt")
        .await
        .expect("read");
    let failure = instore::CommandFailure {
        code: "instance_locked".into(),
        message: "held".into(),
        machine: "mgmt".into(),
    };
    env.control()
        .abandon(retrying, read[0].lock, failure, &QueueSettings::default())
        .await
        .expect("abandon");
    let want = BlockedOn::CommandFailing {
        command: ControlCommand::Resume,
        attempts: 1,
        error: Some("held".into()),
    };
    assert_eq!(info(env, retrying).await.blocked_on, Some(want));

    let given_up = saved(&store, owner, idle()).await;
    give_up(env, given_up).await;
    let want = BlockedOn::CommandFailing {
        command: ControlCommand::Resume,
        attempts: 1,
        error: Some("held elsewhere".into()),
    };
    assert_eq!(info(env, given_up).await.blocked_on, Some(want));

    let fresh = saved(&store, owner, idle()).await;
    env.control()
        .enqueue(fresh, ControlCommand::Cancel)
        .await
        .expect("enqueue");
    assert_eq!(
        info(env, fresh).await.blocked_on,
        Some(BlockedOn::Idle),
        "a command that never failed blocks nothing"
    );
}

/// SPEC §12 `blocked_on`: a suspended instance is blocked by its suspension (reason and
/// exception), whatever else holds.
pub async fn blocked_on_a_suspension_says_why(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let with_exception = saved(&store, owner, suspended(Some("Timeout"))).await;
    let want = BlockedOn::Suspended {
        reason: "stopped by test".into(),
        exception: Some(ExceptionInfo {
            name: "Timeout".into(),
            message: "Timeout happened".into(),
        }),
    };
    assert_eq!(info(env, with_exception).await.blocked_on, Some(want));
    let by_user = InstanceId::new();
    let h = env.handle(&store, owner, Some(by_user));
    let save = Save {
        suspend: instore::SuspendChange::Suspend {
            reason: "operator".into(),
            exception: None,
        },
        ..Save::data(data(1)).with_status(ExecutionStatus::Executing)
    };
    ok_on(&store, &h, save).await;
    let want = BlockedOn::Suspended {
        reason: "operator".into(),
        exception: None,
    };
    assert_eq!(
        info(env, by_user).await.blocked_on,
        Some(want),
        "held and suspended"
    );
    let got = info(env, by_user).await;
    assert_eq!(
        got.suspension,
        Some(Suspension {
            reason: "operator".into(),
            exception: None
        })
    );
}

/// SPEC §12 `blocked_on`: an instance a live owner holds is blocked by that owner (its machine,
/// and since when it holds the lock).
pub async fn blocked_on_a_live_lock_holder_says_since_when(env: &Env) {
    let store = env.store_on("machine-a", env.settings());
    let owner = env.owner(&store, Some("orders")).await;
    let since = env.now();
    let (_h, id) = lock_new(&store, owner).await;
    env.clock.advance(Duration::from_secs(5));
    let want = BlockedOn::LockedByLiveOwner {
        owner,
        machine: Some("machine-a".into()),
        since: Some(since),
    };
    assert_eq!(info(env, id).await.blocked_on, Some(want));
}

/// SPEC §12 `blocked_on`: an initialized instance whose holder's lease ended is held by a dead
/// owner — recoverable, since a live host of its type exists.
pub async fn blocked_on_a_dead_holder_while_a_live_host_of_its_type_exists(env: &Env) {
    let crashing = env.store();
    let dead = env.owner(&crashing, Some("orders")).await;
    let (_h, id) = lock_new(&crashing, dead).await;
    crashing.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    let store = env.store();
    env.owner(&store, Some("orders")).await;
    let got = info(env, id).await;
    match got.blocked_on {
        Some(BlockedOn::HeldByDeadOwner {
            owner,
            lease_ended_at,
        }) => {
            assert_eq!(owner, dead);
            assert!(lease_ended_at.is_some_and(|t| t <= env.now()));
        }
        other => panic!("expected HeldByDeadOwner, got {other:?}"),
    }
    assert_eq!(
        got.machine, got.updated_by,
        "a dead holder's machine is not shown"
    );
}

/// SPEC §12 `blocked_on`: runnable instances with no live owner of their host type wait for a
/// host — held by a dead owner, or unlocked and `Executing` or due — and an instance without a
/// host type waits forever.
pub async fn blocked_on_no_live_host_when_no_owner_of_its_host_type_lives(env: &Env) {
    let crashing = env.store();
    let orders = env.owner(&crashing, Some("orders")).await;
    let billing = env.owner(&crashing, Some("billing")).await;
    let (_h, held) = lock_new(&crashing, orders).await;
    let executing = Save::data(data(1))
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    let unlocked = saved(&crashing, billing, executing.clone()).await;
    let due = Save::data(data(1))
        .with_timer(env.now().plus(Duration::from_secs(10)))
        .and_unlock();
    let timed = saved(&crashing, billing, due).await;
    crashing.shutdown().await;
    env.clock.advance(Duration::from_secs(61));

    let store = env.store();
    let untyped = env.owner(&store, None).await;
    env.owner(&store, Some("shipping")).await;
    let no_type = saved(&store, untyped, executing).await;
    let no_host = |host_type: Option<&str>| {
        Some(BlockedOn::NoLiveHost {
            host_type: host_type.map(str::to_owned),
        })
    };
    assert_eq!(info(env, held).await.blocked_on, no_host(Some("orders")));
    assert_eq!(
        info(env, unlocked).await.blocked_on,
        no_host(Some("billing"))
    );
    assert_eq!(info(env, timed).await.blocked_on, no_host(Some("billing")));
    assert_eq!(info(env, no_type).await.blocked_on, no_host(None));
}

/// SPEC §12 `blocked_on`: an unlocked instance with a future timer waits for it (with or
/// without a live host).
pub async fn blocked_on_a_timer_says_when_it_falls_due(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let due = env.now().plus(Duration::from_secs(3600));
    let mut save = Save::data(data(1)).with_timer(due).and_unlock();
    save.bookmarks = vec!["approve".into()];
    let id = saved(&store, owner, save).await;
    assert_eq!(
        info(env, id).await.blocked_on,
        Some(BlockedOn::Timer { due }),
        "the timer comes before bookmarks"
    );
}

/// SPEC §12 `blocked_on`: an idle unlocked instance without a timer waits on its bookmarks.
pub async fn blocked_on_bookmarks_lists_them(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let mut save = idle();
    save.bookmarks = vec!["approve".into(), "reject".into()];
    let id = saved(&store, owner, save).await;
    let want = BlockedOn::Bookmarks {
        bookmarks: vec!["approve".into(), "reject".into()],
    };
    assert_eq!(info(env, id).await.blocked_on, Some(want));
}

/// SPEC §12 `blocked_on`: an idle unlocked instance with neither timer nor bookmarks (or never
/// initialized) is idle: only an explicit load moves it.
pub async fn blocked_on_idle_when_nothing_would_move_it(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let id = saved(&store, owner, idle()).await;
    let uninitialized = saved(&store, owner, Save::default().and_unlock()).await;
    assert_eq!(info(env, id).await.blocked_on, Some(BlockedOn::Idle));
    assert_eq!(
        info(env, uninitialized).await.blocked_on,
        Some(BlockedOn::Idle)
    );
}

/// SPEC §12 `blocked_on`: nothing blocks a completed instance, nor a runnable one (`Executing`
/// or due, unlocked) while a live host of its type exists.
pub async fn nothing_blocks_a_completed_instance_or_a_runnable_one_with_a_live_host(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, Some("orders")).await;
    let done = saved(&store, owner, completed(ExecutionStatus::Closed)).await;
    let executing = Save::data(data(1))
        .with_status(ExecutionStatus::Executing)
        .and_unlock();
    let runnable = saved(&store, owner, executing).await;
    let due = Save::data(data(1))
        .with_timer(env.now().plus(Duration::from_secs(5)))
        .and_unlock();
    let timed = saved(&store, owner, due).await;
    env.clock.advance(Duration::from_secs(5));
    for id in [done, runnable, timed] {
        assert_eq!(info(env, id).await.blocked_on, None);
    }
}

/// SPEC §12 ▲ retention: `purge_completed` deletes completed instances last changed before
/// the cutoff (strictly), oldest first, at most `limit` per call, with their keys, promoted
/// values, queued commands and error-log entries; running and newer completed instances stay.
pub async fn purge_completed_deletes_only_old_completed_instances_in_batches(env: &Env) {
    let settings = StoreSettings {
        promotions: vec!["total".into()],
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let owner = env.owner(&store, None).await;
    let key = KeyId::new();
    let running = saved(&store, owner, idle()).await;
    let mut save = Save::data(bag([("total", 1i64)])).and_complete();
    save.keys_to_associate = vec![key.into()];
    let with_key = saved(&store, owner, save).await;
    env.clock.advance(Duration::from_secs(1));
    let with_command = saved(&store, owner, idle()).await;
    env.control()
        .enqueue(with_command, ControlCommand::Resume)
        .await
        .expect("enqueue");
    ok(
        &store,
        owner,
        Some(with_command),
        Save::default().and_complete(),
    )
    .await;
    env.clock.advance(Duration::from_secs(1));
    let with_error = saved(&store, owner, idle()).await;
    give_up(env, with_error).await;
    ok(
        &store,
        owner,
        Some(with_error),
        Save::default().and_complete(),
    )
    .await;
    env.clock.advance(Duration::from_secs(1));
    let cutoff = env.now();
    env.clock.advance(Duration::from_secs(10));
    let newer = saved(&store, owner, completed(ExecutionStatus::Closed)).await;
    let newer_at = env.now();

    let q = env.query();
    assert_eq!(q.purge_completed(cutoff, 2).await.expect("purge"), 2);
    let completed_left = InstanceFilter {
        status: vec![InstanceStatus::Completed],
        ..all()
    };
    assert_eq!(
        find(env, completed_left.clone()).await,
        sorted(vec![with_error, newer]),
        "the oldest two went first"
    );
    assert_eq!(q.purge_completed(cutoff, 2).await.expect("purge"), 1);
    assert_eq!(q.purge_completed(cutoff, 2).await.expect("purge"), 0);
    assert_eq!(
        q.purge_completed(newer_at, 10).await.expect("purge"),
        0,
        "strictly before"
    );
    assert_eq!(find(env, all()).await, sorted(vec![running, newer]));
    let purged = InstanceFilter {
        ids: vec![with_key, with_command, with_error],
        ..all()
    };
    assert_eq!(find(env, purged).await, vec![]);

    let result = run(&store, owner, None, LoadByKey::new(key)).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
    let total = InstanceFilter {
        promoted: vec![("total".into(), "1".into())],
        ..all()
    };
    assert_eq!(find(env, total).await, vec![]);
    let queued = env.control().queued(None, 10).await.expect("queued");
    assert!(queued.is_empty(), "{queued:?}");
    let errors = env.control().error_log(10).await.expect("error_log");
    assert!(errors.is_empty(), "{errors:?}");

    let later = newer_at.plus(Duration::from_micros(1));
    assert_eq!(q.purge_completed(later, 10).await.expect("purge"), 1);
    let page = q
        .query(&all(), &PageRequest::default())
        .await
        .expect("query");
    assert_eq!(page.items.len(), 1);
}

/// Lists this module's cases for [`crate::provider_tests!`] (through `query_cases!`).
#[doc(hidden)]
#[macro_export]
macro_rules! query_info_cases {
    ($make:path) => {
        $crate::__case!($make, query::instance_info_shows_every_field);
        $crate::__case!(
            $make,
            query::created_and_updated_follow_the_creation_and_every_save
        );
        $crate::__case!(
            $make,
            query::locked_since_is_set_when_an_owner_takes_the_lock_and_cleared_on_unlock
        );
        $crate::__case!(
            $make,
            query::blocked_on_a_failing_command_says_how_often_it_failed
        );
        $crate::__case!($make, query::blocked_on_a_suspension_says_why);
        $crate::__case!($make, query::blocked_on_a_live_lock_holder_says_since_when);
        $crate::__case!(
            $make,
            query::blocked_on_a_dead_holder_while_a_live_host_of_its_type_exists
        );
        $crate::__case!(
            $make,
            query::blocked_on_no_live_host_when_no_owner_of_its_host_type_lives
        );
        $crate::__case!($make, query::blocked_on_a_timer_says_when_it_falls_due);
        $crate::__case!($make, query::blocked_on_bookmarks_lists_them);
        $crate::__case!($make, query::blocked_on_idle_when_nothing_would_move_it);
        $crate::__case!(
            $make,
            query::nothing_blocks_a_completed_instance_or_a_runnable_one_with_a_live_host
        );
        $crate::__case!(
            $make,
            query::purge_completed_deletes_only_old_completed_instances_in_batches
        );
    };
}
