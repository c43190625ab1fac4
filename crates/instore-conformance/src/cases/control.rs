//! SPEC §10 rules 1–8: the control provider — `Delete` at once, the FIFO queue of one command per
//! instance, locked batches, retries, the error log, handover metadata (decision 0007 "The
//! control queue").
//!
//! | rule (SPEC §10, decision 0007) | cases |
//! |---|---|
//! | 1: `Delete` removes the instance, its keys, promoted values, queued command and error-log entry at once; a live holder gets `LockLost` | `delete_removes_the_instance_and_everything_that_belongs_to_it_at_once` |
//! | 4: enqueue or delete of a missing instance → `InstanceNotFound` | `delete_or_enqueue_of_a_missing_instance_is_instance_not_found` |
//! | 2: FIFO — new commands go to the end, the oldest unlocked is read first; `queued` pages by position | `the_queue_is_fifo_over_a_hundred_commands_read_in_batches` |
//! | 3: an unlocked, never-failed command is overwritten and goes to the end | `enqueueing_over_an_unlocked_never_failed_command_overwrites_it_and_moves_it_to_the_end` |
//! | 3: locked → `CommandLocked`, pending (failed, or lock expired) → `CommandPending`, nothing changes | `enqueueing_over_a_locked_or_pending_command_fails_and_changes_nothing` |
//! | 5: batches of at most the batch size | `a_batch_is_never_larger_than_the_batch_size` |
//! | 5: an expired lock makes the command readable again and counts an attempt | `an_expired_lock_makes_a_command_readable_again_and_counts_an_attempt` |
//! | 5/7: a lock expiring on the last allowed attempt gives the command up (`lock_expired`, the reader's machine) | `a_command_whose_lock_expires_on_its_last_attempt_is_given_up_as_lock_expired` |
//! | 7: a failed command is unlocked at once, keeps its place and is retried first | `an_abandoned_command_keeps_its_place_and_is_retried_first` |
//! | 7/8: after the 5th failure the command is gone and one error-log entry records it | `after_the_fifth_failure_the_command_is_removed_and_one_error_entry_records_it` |
//! | 8: one entry per instance, the last command given up; a new enqueue removes it | `the_error_log_keeps_only_the_last_command_given_up_and_a_new_enqueue_removes_it` |
//! | 8: the instance's removal (delete, completion with `DeleteAll`, purge) removes its entry and queued command | `the_instances_removal_removes_its_error_entry_and_queued_command` |
//! | 7: complete/abandon with a lock that is no longer the command's → `CommandLockLost`, nothing changes | `complete_or_abandon_with_a_stale_lock_is_command_lock_lost_and_changes_nothing` |
//! | 7: an expired lock nobody read again is still accepted | `an_expired_lock_nobody_read_again_still_completes_or_abandons_the_command` |
//! | 6: handover metadata — host type, the live holder's id, machine and control endpoint, the instance's readable metadata | `each_command_is_handed_over_with_host_type_live_holder_and_instance_metadata` |
//! | enqueue for a completed instance → `InstanceComplete` (delete still works) | `enqueue_for_a_completed_instance_is_instance_complete` |

use std::collections::BTreeMap;
use std::time::Duration;

use instore::{
    bag, handover, CommandFailure, CompletionAction, ControlCommand, CreateOwner, ErrorLogEntry,
    InstanceFilter, InstanceId, InstanceValue, KeyId, LoadByKey, PageRequest, PropertyBag,
    QueueEntry, QueueSettings, QueuedCommand, Save, StoreError, StoreSettings, Uuid, Value,
};

use crate::harness::*;

/// The default queue settings (lock 65 s, 5 attempts, batches of 10).
fn qs() -> QueueSettings {
    QueueSettings::default()
}

fn suspend(reason: &str) -> ControlCommand {
    ControlCommand::Suspend {
        reason: reason.into(),
    }
}

/// A failure reported by the management service on machine `mgmt-<n>`.
fn failure(n: u32) -> CommandFailure {
    CommandFailure {
        code: "instance_locked".into(),
        message: format!("attempt {n} failed"),
        machine: format!("mgmt-{n}"),
    }
}

/// A new initialized, unlocked instance.
async fn instance(store: &instore::InstanceStore, owner: instore::OwnerId) -> InstanceId {
    let id = InstanceId::new();
    ok(store, owner, Some(id), Save::data(data(1)).and_unlock()).await;
    id
}

async fn enqueue(env: &Env, id: InstanceId, command: ControlCommand) {
    env.control()
        .enqueue(id, command)
        .await
        .expect("enqueue succeeds");
}

async fn read(env: &Env, settings: &QueueSettings, machine: &str) -> Vec<QueuedCommand> {
    env.control()
        .read_batch(settings, machine)
        .await
        .expect("read_batch")
}

/// The one command a read returns.
async fn read_one(env: &Env, settings: &QueueSettings) -> QueuedCommand {
    let mut batch = read(env, settings, "mgmt").await;
    assert_eq!(batch.len(), 1, "one command to read: {batch:?}");
    batch.remove(0)
}

async fn queue(env: &Env) -> Vec<QueueEntry> {
    env.control().queued(None, 1000).await.expect("queued")
}

async fn errors(env: &Env) -> Vec<ErrorLogEntry> {
    env.control().error_log(1000).await.expect("error_log")
}

fn instances_of(q: &[QueueEntry]) -> Vec<InstanceId> {
    q.iter().map(|e| e.instance).collect()
}

/// Reads and abandons the only queued command until it is given up (default settings: 5
/// failures, the last one `failure(5)`).
async fn fail_until_given_up(env: &Env, id: InstanceId) {
    for n in 1..=qs().max_attempts {
        let c = read_one(env, &qs()).await;
        assert_eq!(c.instance, id);
        env.control()
            .abandon(id, c.lock, failure(n), &qs())
            .await
            .expect("abandon");
    }
    assert!(queue(env).await.is_empty(), "given up after 5 failures");
}

/// Enqueues `command` for `id` and fails it until it is given up: `id` gets an error-log entry.
async fn give_up(env: &Env, id: InstanceId, command: ControlCommand) {
    enqueue(env, id, command).await;
    fail_until_given_up(env, id).await;
}

async fn count(env: &Env, filter: InstanceFilter) -> u64 {
    env.query().count(&filter).await.expect("count")
}

/// SPEC §10 rule 1: `Delete` runs at once and removes the instance with its keys, promoted
/// values, queued command and error-log entry; a live owner still holding it gets `LockLost` on
/// its next command. Other instances stay.
pub async fn delete_removes_the_instance_and_everything_that_belongs_to_it_at_once(env: &Env) {
    let settings = StoreSettings {
        promotions: vec!["total".into()],
        ..env.settings()
    };
    let store = env.store_with(settings, Vec::new()).0;
    let owner = env.owner(&store, None).await;
    let (kx, ky) = (KeyId::new(), KeyId::new());
    // y: unlocked, with a key, a promoted value and an error-log entry.
    let y = InstanceId::new();
    let mut save = Save::data(bag([("total", 42i64)])).and_unlock();
    save.keys_to_associate = vec![ky.into()];
    ok(&store, owner, Some(y), save).await;
    give_up(env, y, suspend("audit")).await;
    // x: held by a live handle, with a key, a promoted value and a queued command.
    let x = InstanceId::new();
    let hx = env.handle(&store, owner, Some(x));
    let mut save = Save::data(bag([("total", 42i64)]));
    save.keys_to_associate = vec![kx.into()];
    ok_on(&store, &hx, save).await;
    enqueue(env, x, suspend("audit")).await;
    let z = instance(&store, owner).await;

    let total_42 = InstanceFilter {
        promoted: vec![("total".into(), "42".into())],
        ..InstanceFilter::all()
    };
    assert_eq!(count(env, total_42.clone()).await, 2);
    assert_eq!(instances_of(&queue(env).await), vec![x]);
    assert_eq!(errors(env).await.len(), 1);

    env.control().delete(x).await.expect("delete x");
    env.control()
        .enqueue(y, ControlCommand::Delete)
        .await
        .expect("an enqueued Delete runs at once");

    let all = env
        .query()
        .query(&InstanceFilter::all(), &PageRequest::default())
        .await
        .expect("query");
    let left: Vec<InstanceId> = all.items.iter().map(|i| i.id).collect();
    assert_eq!(left, vec![z], "only z is left");
    assert_eq!(count(env, total_42).await, 0, "promoted values are gone");
    for key in [kx, ky] {
        let by_key = InstanceFilter {
            key: Some(key),
            ..InstanceFilter::all()
        };
        assert_eq!(count(env, by_key).await, 0);
        let result = run(&store, owner, None, LoadByKey::new(key)).await;
        assert_err!(result, StoreError::InstanceKeyNotReady { key: k } if k == key);
    }
    assert!(queue(env).await.is_empty(), "the queued command is gone");
    assert!(errors(env).await.is_empty(), "the error-log entry is gone");

    let result = store.execute(&hx, Save::data(data(2)), T).await;
    assert_err!(result, StoreError::LockLost { instance } if instance == x);
}

/// SPEC §10 rule 4: enqueueing any command for, or deleting, an instance that does not exist
/// (never did, or was deleted) is `InstanceNotFound`, and nothing is queued.
pub async fn delete_or_enqueue_of_a_missing_instance_is_instance_not_found(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let deleted = instance(&store, owner).await;
    env.control().delete(deleted).await.expect("delete");
    for missing in [InstanceId::new(), deleted] {
        for command in [
            suspend("x"),
            ControlCommand::Resume,
            ControlCommand::Terminate { reason: "x".into() },
            ControlCommand::Cancel,
            ControlCommand::Delete,
        ] {
            let result = env.control().enqueue(missing, command).await;
            assert_err!(result, StoreError::InstanceNotFound { instance } if instance == missing);
        }
        let result = env.control().delete(missing).await;
        assert_err!(result, StoreError::InstanceNotFound { instance } if instance == missing);
    }
    assert!(queue(env).await.is_empty());
}

/// SPEC §10 rules 2 and 5: over 100 commands, reads (in batches of at most 10, each skipping
/// the commands earlier reads locked) return them in the order they were enqueued; `queued`
/// lists them in that order and pages by position; completing removes them.
pub async fn the_queue_is_fifo_over_a_hundred_commands_read_in_batches(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let id = instance(&store, owner).await;
        let command = match i % 3 {
            0 => suspend(&format!("s{i}")),
            1 => ControlCommand::Resume,
            _ => ControlCommand::Cancel,
        };
        enqueue(env, id, command).await;
        ids.push(id);
    }
    let listed = queue(env).await;
    assert_eq!(instances_of(&listed), ids);
    assert!(listed.windows(2).all(|w| w[0].position < w[1].position));
    let after = listed[49].position;
    let page = env.control().queued(Some(after), 10).await.expect("queued");
    assert_eq!(instances_of(&page), ids[50..60].to_vec());

    let mut read_order = Vec::new();
    let mut batches = Vec::new();
    loop {
        let batch = read(env, &qs(), "mgmt").await;
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10, "batch of {}", batch.len());
        read_order.extend(batch.iter().map(|c| c.instance));
        batches.push(batch);
    }
    assert_eq!(read_order, ids, "FIFO");
    assert_eq!(batches.len(), 10);
    assert_eq!(batches[0][0].command, suspend("s0"));
    assert_eq!(batches[0][1].command, ControlCommand::Resume);
    for c in batches.iter().flatten() {
        env.control()
            .complete(c.instance, c.lock)
            .await
            .expect("complete");
    }
    assert!(
        queue(env).await.is_empty(),
        "completed commands are removed"
    );
    assert!(read(env, &qs(), "mgmt").await.is_empty());
}

/// SPEC §10 rules 2–3: enqueueing for an instance whose queued command is neither locked nor
/// failed replaces that command, and the new one goes to the end of the queue.
pub async fn enqueueing_over_an_unlocked_never_failed_command_overwrites_it_and_moves_it_to_the_end(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b) = (instance(&store, owner).await, instance(&store, owner).await);
    enqueue(env, a, suspend("first")).await;
    enqueue(env, b, ControlCommand::Cancel).await;
    let first_position = queue(env).await[0].position;
    let terminate = ControlCommand::Terminate {
        reason: "second".into(),
    };
    enqueue(env, a, terminate.clone()).await;

    let q = queue(env).await;
    assert_eq!(instances_of(&q), vec![b, a], "one command per instance");
    assert_eq!(q[1].command, terminate, "the new command wins");
    assert!(q[1].position > q[0].position && q[1].position > first_position);
    assert_eq!((q[1].attempts, q[1].locked_until), (0, None));

    let batch = read(env, &qs(), "mgmt").await;
    let got: Vec<(InstanceId, ControlCommand)> =
        batch.into_iter().map(|c| (c.instance, c.command)).collect();
    assert_eq!(got, vec![(b, ControlCommand::Cancel), (a, terminate)]);
}

/// SPEC §10 rule 3: enqueueing over a locked command is `CommandLocked`; over a pending one
/// (failed at least once, or read by a reader whose lock expired) `CommandPending`; either way
/// the queue is unchanged.
pub async fn enqueueing_over_a_locked_or_pending_command_fails_and_changes_nothing(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b) = (instance(&store, owner).await, instance(&store, owner).await);
    enqueue(env, a, suspend("first")).await;
    let taken = read_one(env, &qs()).await;

    let before = queue(env).await;
    let result = env.control().enqueue(a, ControlCommand::Resume).await;
    assert_err!(result, StoreError::CommandLocked { instance } if instance == a);
    assert_eq!(queue(env).await, before, "a locked command stays");

    env.control()
        .abandon(a, taken.lock, failure(1), &qs())
        .await
        .expect("abandon");
    let before = queue(env).await;
    assert_eq!((before[0].attempts, before[0].locked_until), (1, None));
    let result = env.control().enqueue(a, ControlCommand::Resume).await;
    assert_err!(result, StoreError::CommandPending { instance, attempts: 1 } if instance == a);
    assert_eq!(queue(env).await, before, "a pending command stays");

    // b: read, and its reader's lock expires before anyone reads it again.
    let _ = read(env, &qs(), "mgmt").await; // takes a (retry) and nothing else
    enqueue(env, b, ControlCommand::Cancel).await;
    let taken_b: Vec<QueuedCommand> = read(env, &qs(), "mgmt").await;
    assert_eq!(instances_of_read(&taken_b), vec![b]);
    env.clock.advance(qs().lock_time + Duration::from_secs(1));
    let before = queue(env).await;
    let result = env.control().enqueue(b, ControlCommand::Resume).await;
    assert_err!(result, StoreError::CommandPending { instance, .. } if instance == b);
    assert_eq!(queue(env).await, before);
}

fn instances_of_read(batch: &[QueuedCommand]) -> Vec<InstanceId> {
    batch.iter().map(|c| c.instance).collect()
}

/// SPEC §10 rule 5: a read returns at most the batch size (10 by default; tried with 10 and 3).
pub async fn a_batch_is_never_larger_than_the_batch_size(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    for (size, commands, want) in [(10, 25, vec![10, 10, 5, 0]), (3, 7, vec![3, 3, 1, 0])] {
        for _ in 0..commands {
            let id = instance(&store, owner).await;
            enqueue(env, id, ControlCommand::Resume).await;
        }
        let settings = QueueSettings {
            batch_size: size,
            ..qs()
        };
        let mut sizes = Vec::new();
        for _ in 0..want.len() {
            let batch = read(env, &settings, "mgmt").await;
            sizes.push(batch.len());
            for c in batch {
                env.control()
                    .complete(c.instance, c.lock)
                    .await
                    .expect("complete");
            }
        }
        assert_eq!(sizes, want, "batch size {size}");
    }
}

/// SPEC §10 rule 5: a read command is locked for the lock time; once the lock expires the
/// command is readable again, with one more failed attempt, under a new lock.
pub async fn an_expired_lock_makes_a_command_readable_again_and_counts_an_attempt(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let a = instance(&store, owner).await;
    enqueue(env, a, suspend("x")).await;
    let enqueued_at = env.now();
    let first = read_one(env, &qs()).await;
    assert_eq!((first.attempts, first.enqueued_at), (0, enqueued_at));
    assert_eq!(first.locked_until, env.now().plus(qs().lock_time));
    let q = queue(env).await;
    assert_eq!(q[0].locked_until, Some(first.locked_until));

    assert!(read(env, &qs(), "mgmt").await.is_empty(), "locked");
    env.clock.advance(qs().lock_time - Duration::from_secs(1));
    assert!(read(env, &qs(), "mgmt").await.is_empty(), "still locked");
    env.clock.advance(Duration::from_secs(2));
    let second = read_one(env, &qs()).await;
    assert_eq!(second.instance, a);
    assert_eq!(
        second.attempts, 1,
        "the expired lock counts a failed attempt"
    );
    assert_ne!(second.lock, first.lock);
    assert_eq!(second.locked_until, env.now().plus(qs().lock_time));
    let q = queue(env).await;
    assert_eq!(q[0].attempts, 1);
    assert!(q[0].last_error.is_some(), "{q:?}");

    let result = env.control().complete(a, first.lock).await;
    assert_err!(result, StoreError::CommandLockLost { instance } if instance == a);
    env.control()
        .complete(a, second.lock)
        .await
        .expect("complete");
    assert!(queue(env).await.is_empty());
    assert!(errors(env).await.is_empty());
}

/// SPEC §10 rules 5 and 7–8: a command whose lock expires on its last allowed attempt is given
/// up when the next read finds it — not returned — and its error-log entry has code
/// `lock_expired` and the machine of the reader that held it.
pub async fn a_command_whose_lock_expires_on_its_last_attempt_is_given_up_as_lock_expired(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let a = instance(&store, owner).await;
    enqueue(env, a, ControlCommand::Cancel).await;
    let settings = QueueSettings {
        lock_time: Duration::from_secs(10),
        ..qs()
    };
    for n in 0..settings.max_attempts {
        let batch = read(env, &settings, &format!("reader-{n}")).await;
        assert_eq!(instances_of_read(&batch), vec![a]);
        assert_eq!(batch[0].attempts, n);
        env.clock.advance(Duration::from_secs(11));
    }
    assert!(read(env, &settings, "reader-last").await.is_empty());
    assert!(queue(env).await.is_empty(), "given up");
    let want = ErrorLogEntry {
        instance: a,
        command: ControlCommand::Cancel,
        code: "lock_expired".into(),
        message: errors(env).await[0].message.clone(),
        last_attempt_at: env.now(),
        machine: "reader-4".into(),
        attempts: 5,
    };
    assert_eq!(errors(env).await, vec![want]);
}

/// SPEC §10 rule 7, decision 0007: a failed command is unlocked at once and keeps its place, so
/// the next read retries it before later commands.
pub async fn an_abandoned_command_keeps_its_place_and_is_retried_first(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b) = (instance(&store, owner).await, instance(&store, owner).await);
    enqueue(env, a, suspend("x")).await;
    enqueue(env, b, ControlCommand::Resume).await;
    let one = QueueSettings {
        batch_size: 1,
        ..qs()
    };
    let first = read_one(env, &one).await;
    assert_eq!(first.instance, a);
    env.control()
        .abandon(a, first.lock, failure(1), &qs())
        .await
        .expect("abandon");
    let q = queue(env).await;
    assert_eq!(instances_of(&q), vec![a, b]);
    assert_eq!(q[0].last_error.as_deref(), Some("attempt 1 failed"));
    let again = read_one(env, &one).await;
    assert_eq!((again.instance, again.attempts), (a, 1));
    let next = read_one(env, &one).await;
    assert_eq!((next.instance, next.attempts), (b, 0));
}

/// SPEC §10 rules 7–8: each failure counts an attempt; after the 5th the command is removed and
/// the error log holds exactly one entry for the instance: command, instance, code, message,
/// time of the last attempt, the machine that made it and the number of attempts. Queries show
/// it (`has_error`, `InstanceInfo::error`).
pub async fn after_the_fifth_failure_the_command_is_removed_and_one_error_entry_records_it(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let a = instance(&store, owner).await;
    let terminate = ControlCommand::Terminate {
        reason: "cleanup".into(),
    };
    enqueue(env, a, terminate.clone()).await;
    for n in 1..=5 {
        env.clock.advance(Duration::from_secs(1));
        let c = read_one(env, &qs()).await;
        assert_eq!((c.instance, c.attempts), (a, n - 1));
        env.control()
            .abandon(a, c.lock, failure(n), &qs())
            .await
            .expect("abandon");
        if n < 5 {
            let q = queue(env).await;
            assert_eq!(instances_of(&q), vec![a], "retried after failure {n}");
            assert_eq!(q[0].attempts, n);
            assert_eq!(q[0].last_error, Some(format!("attempt {n} failed")));
            assert_eq!(q[0].locked_until, None);
            assert!(errors(env).await.is_empty());
        }
    }
    assert!(queue(env).await.is_empty(), "removed after the 5th failure");
    let want = ErrorLogEntry {
        instance: a,
        command: terminate,
        code: "instance_locked".into(),
        message: "attempt 5 failed".into(),
        last_attempt_at: env.now(),
        machine: "mgmt-5".into(),
        attempts: 5,
    };
    assert_eq!(errors(env).await, vec![want.clone()]);

    let has_error = InstanceFilter {
        has_error: Some(true),
        ..InstanceFilter::all()
    };
    let page = env
        .query()
        .query(&has_error, &PageRequest::default())
        .await
        .expect("query");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].error, Some(want));
    assert_eq!(page.items[0].pending_command, None);
}

/// SPEC §10 rule 8: the error log keeps at most one entry per instance — the last command given
/// up (a newer give-up replaces the older entry) — and enqueueing a new command for the instance
/// removes it. Entries are listed newest attempt first.
pub async fn the_error_log_keeps_only_the_last_command_given_up_and_a_new_enqueue_removes_it(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b) = (instance(&store, owner).await, instance(&store, owner).await);
    give_up(env, a, suspend("first")).await;
    let log = errors(env).await;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].instance, &log[0].command), (a, &suspend("first")));

    enqueue(env, a, ControlCommand::Resume).await;
    assert!(
        errors(env).await.is_empty(),
        "a new enqueue removes the entry"
    );
    env.clock.advance(Duration::from_secs(1));
    fail_until_given_up(env, a).await;
    let log = errors(env).await;
    assert_eq!(log.len(), 1, "one entry per instance: {log:?}");
    assert_eq!(log[0].command, ControlCommand::Resume, "the newer one");
    assert_eq!(log[0].last_attempt_at, env.now());

    env.clock.advance(Duration::from_secs(1));
    give_up(env, b, ControlCommand::Cancel).await;
    let order: Vec<InstanceId> = errors(env).await.iter().map(|e| e.instance).collect();
    assert_eq!(order, vec![b, a], "newest attempt first");
    let one = env.control().error_log(1).await.expect("error_log");
    assert_eq!(one.len(), 1);
}

/// SPEC §10 rules 1 and 8, §6.4, §12: removing an instance — `Delete`, completing it under
/// `DeleteAll`, purging it — removes its error-log entry, queued command and promoted values.
/// Completing under `Keep` removes nothing.
pub async fn the_instances_removal_removes_its_error_entry_and_queued_command(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let deleted = instance(&store, owner).await;
    give_up(env, deleted, suspend("x")).await;
    env.control().delete(deleted).await.expect("delete");
    assert!(errors(env).await.is_empty(), "removed by Delete");

    let settings = StoreSettings {
        completion: CompletionAction::DeleteAll,
        promotions: vec!["total".into()],
        ..env.settings()
    };
    let delete_all = env.store_with(settings, Vec::new()).0;
    let owner2 = env.owner(&delete_all, None).await;
    let (failed, queued) = (
        instance(&delete_all, owner2).await,
        instance(&delete_all, owner2).await,
    );
    give_up(env, failed, suspend("x")).await;
    let save = Save::data(bag([("total", 7i64)])).and_unlock();
    ok(&delete_all, owner2, Some(queued), save).await;
    enqueue(env, queued, ControlCommand::Cancel).await;
    for id in [failed, queued] {
        ok(
            &delete_all,
            owner2,
            Some(id),
            Save::default().and_complete(),
        )
        .await;
    }
    assert!(errors(env).await.is_empty(), "removed by DeleteAll");
    assert!(queue(env).await.is_empty(), "removed by DeleteAll");
    let total_7 = InstanceFilter {
        promoted: vec![("total".into(), "7".into())],
        ..InstanceFilter::all()
    };
    assert_eq!(count(env, total_7).await, 0);
    assert_eq!(count(env, InstanceFilter::all()).await, 0);

    let kept = instance(&store, owner).await;
    give_up(env, kept, suspend("x")).await;
    let queued_kept = instance(&store, owner).await;
    enqueue(env, queued_kept, ControlCommand::Resume).await;
    for id in [kept, queued_kept] {
        ok(&store, owner, Some(id), Save::default().and_complete()).await;
    }
    assert_eq!(errors(env).await.len(), 1, "completion under Keep keeps it");
    assert_eq!(queue(env).await.len(), 1, "completion under Keep keeps it");
    let purged = env
        .query()
        .purge_completed(env.now().plus(Duration::from_secs(1)), 10)
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert!(errors(env).await.is_empty(), "removed by the purge");
    assert!(queue(env).await.is_empty(), "removed by the purge");
}

/// SPEC §10 rule 7: completing or abandoning with a lock that is not the command's (an older
/// read's, after the lock expired and another read took it; a made-up one; the command's
/// instance deleted) is `CommandLockLost` and changes nothing.
pub async fn complete_or_abandon_with_a_stale_lock_is_command_lock_lost_and_changes_nothing(
    env: &Env,
) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b, c) = (
        instance(&store, owner).await,
        instance(&store, owner).await,
        instance(&store, owner).await,
    );
    enqueue(env, a, suspend("x")).await;
    let first = read_one(env, &qs()).await;
    env.clock.advance(qs().lock_time + Duration::from_secs(1));
    let second = read_one(env, &qs()).await;
    assert_eq!((second.instance, second.attempts), (a, 1));

    let before = queue(env).await;
    for lock in [first.lock, Uuid::new_v4()] {
        let result = env.control().complete(a, lock).await;
        assert_err!(result, StoreError::CommandLockLost { instance } if instance == a);
        let result = env.control().abandon(a, lock, failure(1), &qs()).await;
        assert_err!(result, StoreError::CommandLockLost { instance } if instance == a);
    }
    let result = env.control().complete(b, second.lock).await;
    assert_err!(result, StoreError::CommandLockLost { instance } if instance == b);
    assert_eq!(queue(env).await, before, "nothing changed");
    assert!(errors(env).await.is_empty());

    enqueue(env, c, ControlCommand::Cancel).await;
    let third = read_one(env, &qs()).await;
    assert_eq!(third.instance, c);
    env.control().delete(c).await.expect("delete");
    let result = env.control().complete(c, third.lock).await;
    assert_err!(result, StoreError::CommandLockLost { instance } if instance == c);
    let result = env
        .control()
        .abandon(c, third.lock, failure(1), &qs())
        .await;
    assert_err!(result, StoreError::CommandLockLost { instance } if instance == c);
    assert!(errors(env).await.is_empty());

    env.control()
        .complete(a, second.lock)
        .await
        .expect("the live lock completes");
    assert!(queue(env).await.is_empty());
}

/// Decision 0007: complete and abandon need the lock the read handed out — an expired lock that
/// no reader replaced is still the command's, and is accepted (abandoning counts one attempt,
/// not two).
pub async fn an_expired_lock_nobody_read_again_still_completes_or_abandons_the_command(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let (a, b) = (instance(&store, owner).await, instance(&store, owner).await);
    enqueue(env, a, suspend("x")).await;
    enqueue(env, b, ControlCommand::Resume).await;
    let batch = read(env, &qs(), "mgmt").await;
    assert_eq!(instances_of_read(&batch), vec![a, b]);
    env.clock.advance(qs().lock_time + Duration::from_secs(1));
    env.control()
        .complete(a, batch[0].lock)
        .await
        .expect("complete with an expired lock");
    env.control()
        .abandon(b, batch[1].lock, failure(1), &qs())
        .await
        .expect("abandon with an expired lock");
    let q = queue(env).await;
    assert_eq!(instances_of(&q), vec![b]);
    assert_eq!((q[0].attempts, q[0].locked_until), (1, None));
}

/// SPEC §10 rule 6: each command read comes with the instance's readable metadata (write-only
/// values left out), its host type, and — while a live owner holds the instance — that owner's
/// id, machine and control endpoint (its owner metadata entry `instore:control_endpoint`).
/// Without a live holder (none, or its lease ended) there is no owner, machine or endpoint.
pub async fn each_command_is_handed_over_with_host_type_live_holder_and_instance_metadata(
    env: &Env,
) {
    let store = env.store_on("host-a", env.settings());
    let endpoint = "http://host-a:7070/control";
    let owner = env
        .owner_with(
            &store,
            CreateOwner {
                host_type: Some("orders".into()),
                metadata: bag([(handover::CONTROL_ENDPOINT, endpoint)]),
                ..CreateOwner::default()
            },
        )
        .await;
    let held = InstanceId::new();
    let h = env.handle(&store, owner, Some(held));
    let save = Save {
        metadata_changes: vec![
            set("site", "eu-1"),
            set("service", "/orders"),
            set("secret", InstanceValue::write_only("s3cret")),
        ],
        ..Save::data(data(1))
    };
    ok_on(&store, &h, save).await;
    let unlocked = InstanceId::new();
    let save = Save {
        metadata_changes: vec![set("site", "us-2")],
        ..Save::data(data(1)).and_unlock()
    };
    ok(&store, owner, Some(unlocked), save).await;
    enqueue(env, held, suspend("x")).await;
    enqueue(env, unlocked, ControlCommand::Resume).await;

    let batch = read(env, &qs(), "mgmt").await;
    let locks: BTreeMap<InstanceId, Uuid> = batch.iter().map(|c| (c.instance, c.lock)).collect();
    let bags: BTreeMap<InstanceId, PropertyBag> = batch
        .into_iter()
        .map(|c| (c.instance, c.metadata))
        .collect();
    let want_held = bag([
        ("site", Value::from("eu-1")),
        ("service", Value::from("/orders")),
        (handover::HOST_TYPE, Value::from("orders")),
        (handover::OWNER, Value::Uuid(owner.as_uuid())),
        (handover::MACHINE, Value::from("host-a")),
        (handover::CONTROL_ENDPOINT, Value::from(endpoint)),
    ]);
    assert_eq!(bags[&held], want_held);
    let want_unlocked = bag([
        ("site", Value::from("us-2")),
        (handover::HOST_TYPE, Value::from("orders")),
    ]);
    assert_eq!(bags[&unlocked], want_unlocked);

    // The holder's host crashes: once its lease has ended, nobody live holds the instance.
    for id in [held, unlocked] {
        let c = &locks[&id];
        env.control().complete(id, *c).await.expect("complete");
    }
    store.shutdown().await;
    env.clock.advance(Duration::from_secs(61));
    enqueue(env, held, ControlCommand::Resume).await;
    let batch = read(env, &qs(), "mgmt").await;
    let want_dead = bag([
        ("site", Value::from("eu-1")),
        ("service", Value::from("/orders")),
        (handover::HOST_TYPE, Value::from("orders")),
    ]);
    assert_eq!(batch[0].metadata, want_dead);
    drop(h);
}

/// Decision 0007: a completed instance has nothing to steer — enqueueing any command for it is
/// `InstanceComplete` and nothing is queued; `Delete` still removes it.
pub async fn enqueue_for_a_completed_instance_is_instance_complete(env: &Env) {
    let store = env.store();
    let owner = env.owner(&store, None).await;
    let done = InstanceId::new();
    ok(
        &store,
        owner,
        Some(done),
        Save::data(data(1)).and_complete(),
    )
    .await;
    for command in [
        suspend("x"),
        ControlCommand::Resume,
        ControlCommand::Terminate { reason: "x".into() },
        ControlCommand::Cancel,
    ] {
        let result = env.control().enqueue(done, command).await;
        assert_err!(result, StoreError::InstanceComplete { instance } if instance == done);
    }
    assert!(queue(env).await.is_empty());
    env.control()
        .enqueue(done, ControlCommand::Delete)
        .await
        .expect("a completed instance can be deleted");
    assert_eq!(count(env, InstanceFilter::all()).await, 0);
}

/// Lists this module's cases for [`crate::provider_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! control_cases {
    ($make:path) => {
        $crate::__case!(
            $make,
            control::delete_removes_the_instance_and_everything_that_belongs_to_it_at_once
        );
        $crate::__case!(
            $make,
            control::delete_or_enqueue_of_a_missing_instance_is_instance_not_found
        );
        $crate::__case!(
            $make,
            control::the_queue_is_fifo_over_a_hundred_commands_read_in_batches
        );
        $crate::__case!(
            $make,
            control::enqueueing_over_an_unlocked_never_failed_command_overwrites_it_and_moves_it_to_the_end
        );
        $crate::__case!(
            $make,
            control::enqueueing_over_a_locked_or_pending_command_fails_and_changes_nothing
        );
        $crate::__case!($make, control::a_batch_is_never_larger_than_the_batch_size);
        $crate::__case!(
            $make,
            control::an_expired_lock_makes_a_command_readable_again_and_counts_an_attempt
        );
        $crate::__case!(
            $make,
            control::a_command_whose_lock_expires_on_its_last_attempt_is_given_up_as_lock_expired
        );
        $crate::__case!(
            $make,
            control::an_abandoned_command_keeps_its_place_and_is_retried_first
        );
        $crate::__case!(
            $make,
            control::after_the_fifth_failure_the_command_is_removed_and_one_error_entry_records_it
        );
        $crate::__case!(
            $make,
            control::the_error_log_keeps_only_the_last_command_given_up_and_a_new_enqueue_removes_it
        );
        $crate::__case!(
            $make,
            control::the_instances_removal_removes_its_error_entry_and_queued_command
        );
        $crate::__case!(
            $make,
            control::complete_or_abandon_with_a_stale_lock_is_command_lock_lost_and_changes_nothing
        );
        $crate::__case!(
            $make,
            control::an_expired_lock_nobody_read_again_still_completes_or_abandons_the_command
        );
        $crate::__case!(
            $make,
            control::each_command_is_handed_over_with_host_type_live_holder_and_instance_metadata
        );
        $crate::__case!(
            $make,
            control::enqueue_for_a_completed_instance_is_instance_complete
        );
    };
}
