//! SPEC §6 (general), §6.7, §9: one command per handle, timeouts, unsupported commands, extensions.
//!
//! | rule (SPEC §6, §6.7, §9) | cases |
//! |---|---|
//! | only one command runs on a handle at a time (`CommandOverlap`) | `a_second_command_on_a_busy_handle_is_command_overlap` |
//! | any command can time out: `Timeout`, the handle is freed, no partial effect, a lock it held or may have taken is released | `a_timed_out_save_leaves_no_partial_effect_and_releases_the_lock`, `a_timed_out_load_frees_the_handle_and_leaves_the_instance_takeable`, `a_load_by_key_cut_off_after_taking_the_lock_releases_it`, `a_try_load_runnable_cut_off_after_taking_the_lock_releases_it` |
//! | commands are validated before they reach storage; errors name the command and field (`Invalid`, `AlreadyBoundToInstance`, `HostTypeRequired`) | `invalid_commands_are_rejected_before_reaching_storage` |
//! | a freed handle runs no more commands | `a_freed_handle_runs_no_more_commands` |
//! | commands nobody understands → `CommandNotSupported` | `an_unknown_custom_command_is_command_not_supported` |
//! | an extension sees each command before and after it runs and may reject it (nothing happens) | `an_extension_can_reject_a_command_and_nothing_happens` |
//! | an extension may add effects that run in the same transaction | `an_extension_can_add_metadata_to_every_save_in_the_same_transaction` |
//! | an extension may add its own commands | `an_extension_can_provide_its_own_command` |
//!
//! `AlreadyBoundToOwner` is in `owners`; the built-in suspension extension in `suspension`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instore::{
    bag, Command, CommandContext, CustomCommand, Extension, InstanceHandle, InstanceId,
    InstanceStore, InstanceView, KeyId, Load, LoadByKey, LoadGuards, MetadataChange, OwnerId, Save,
    StoreError,
};

use crate::harness::{
    assert_err, create, data, eventually, finish, lock_new, ok_on, spawn, Env, T,
};

/// Loads `id` as `owner` once another owner's lock on it is gone (released in the background).
async fn load_when_unlocked(
    env: &Env,
    store: &InstanceStore,
    owner: OwnerId,
    id: InstanceId,
) -> InstanceView {
    for _ in 0..2000 {
        let handle = env.handle(store, owner, Some(id));
        match store.execute(&handle, create(), T).await {
            Ok(view) => return view,
            Err(StoreError::InstanceLocked { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the lock on {id} was never released");
}

/// A new owner of `store` holding a new instance with data `{a: 1}` through the handle.
async fn locked_instance(env: &Env, store: &InstanceStore) -> (Arc<InstanceHandle>, InstanceId) {
    let owner = env.owner(store, Some("orders")).await;
    let (handle, id) = lock_new(store, owner).await;
    (Arc::new(handle), id)
}

/// While a command runs on a handle, a second one on the same handle is refused with
/// `CommandOverlap` without reaching storage; once the first ends, the handle takes commands.
pub async fn a_second_command_on_a_busy_handle_is_command_overlap(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let (handle, _) = locked_instance(env, &store).await;
    faults.hold();
    let first = spawn(&store, handle.clone(), Save::data(data(2)), T);
    eventually("the first save is in flight", || faults.calls("save") == 2).await;

    let second = store.execute(&handle, Save::data(data(3)), T).await;
    assert_err!(second, StoreError::CommandOverlap);
    let load = store.execute(&handle, Load::default(), T).await;
    assert_err!(load, StoreError::CommandOverlap);
    let calls = (faults.calls("save"), faults.calls("load"));
    assert_eq!(calls, (2, 1), "refused before reaching storage");

    faults.release();
    finish(first).await.expect("the first save succeeds");
    let view = ok_on(&store, &handle, Load::default()).await;
    assert_eq!(view.data, data(2), "only the first save ran");
}

/// A save that does not finish within its timeout answers `Timeout` and frees the handle; it
/// takes no effect, and the lock the handle held is released in the background.
pub async fn a_timed_out_save_leaves_no_partial_effect_and_releases_the_lock(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let (handle, id) = locked_instance(env, &store).await;
    faults.hold();
    let save = Save {
        keys_to_associate: vec![KeyId::new().into()],
        ..Save::data(data(2))
    };
    let task = spawn(&store, handle.clone(), save, Duration::from_secs(5));
    eventually("the save is in flight", || faults.calls("save") == 2).await;
    env.clock.advance(Duration::from_secs(6));
    assert_err!(finish(task).await, StoreError::Timeout);
    assert!(handle.is_freed(), "a timeout frees the handle");
    faults.release();

    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_when_unlocked(env, &other_store, other, id).await;
    assert_eq!(view.data, data(1), "the timed-out save had no effect");
    assert!(view.keys.is_empty(), "nor did its keys");
    assert_eq!(view.lock_version, Some(2));
}

/// A load that times out frees the handle; the instance it may have locked stays usable, for a
/// new handle of the same owner (no `HandleConflict`) and for other owners.
pub async fn a_timed_out_load_frees_the_handle_and_leaves_the_instance_takeable(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let owner = env.owner(&store, None).await;
    let id = InstanceId::new();
    let first = env.handle(&store, owner, Some(id));
    ok_on(&store, &first, create()).await;
    ok_on(&store, &first, Save::data(data(1)).and_unlock()).await;

    faults.hold();
    let handle = Arc::new(env.handle(&store, owner, Some(id)));
    let task = spawn(&store, handle.clone(), create(), Duration::from_secs(5));
    eventually("the load is in flight", || faults.calls("load") == 2).await;
    env.clock.advance(Duration::from_secs(6));
    assert_err!(finish(task).await, StoreError::Timeout);
    assert!(handle.is_freed(), "a timeout frees the handle");
    faults.release();

    let again = env.handle(&store, owner, Some(id));
    assert_eq!(ok_on(&store, &again, create()).await.data, data(1));
    ok_on(&store, &again, Save::data(data(2)).and_unlock()).await;
    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_when_unlocked(env, &other_store, other, id).await;
    assert_eq!(view.data, data(2));
}

/// A `LoadByKey` cut off by its timeout *after* storage gave it the lock (the store cannot know
/// which instance a key leads to until the answer comes) does not strand that lock: it is
/// released once the late answer arrives, and other owners can take the instance.
pub async fn a_load_by_key_cut_off_after_taking_the_lock_releases_it(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let owner = env.owner(&store, None).await;
    let (id, key) = (InstanceId::new(), KeyId::new());
    let first = env.handle(&store, owner, Some(id));
    let with_key = Save {
        keys_to_associate: vec![key.into()],
        ..Save::data(data(1))
    };
    ok_on(&store, &first, with_key.and_unlock()).await;

    faults.hold_after("load");
    let loads = faults.completed("load");
    let handle = Arc::new(env.handle(&store, owner, None));
    let task = spawn(
        &store,
        handle.clone(),
        LoadByKey::new(key),
        Duration::from_secs(5),
    );
    eventually("the load took the lock", || {
        faults.completed("load") == loads + 1
    })
    .await;
    env.clock.advance(Duration::from_secs(6));
    assert_err!(finish(task).await, StoreError::Timeout);
    faults.release_after("load");

    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_when_unlocked(env, &other_store, other, id).await;
    assert_eq!(view.data, data(1));
}

/// Likewise for `TryLoadRunnable`: the runnable instance it took after its deadline is released.
pub async fn a_try_load_runnable_cut_off_after_taking_the_lock_releases_it(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let owner = env.owner(&store, Some("orders")).await;
    let id = InstanceId::new();
    let first = env.handle(&store, owner, Some(id));
    let executing = Save {
        status: instore::ExecutionStatus::Executing,
        ..Save::data(data(1))
    };
    ok_on(&store, &first, executing.and_unlock()).await;

    faults.hold_after("try_load_runnable");
    let handle = Arc::new(env.handle(&store, owner, None));
    let task = spawn(
        &store,
        handle.clone(),
        Command::TryLoadRunnable,
        Duration::from_secs(5),
    );
    eventually("the claim took the lock", || {
        faults.completed("try_load_runnable") == 1
    })
    .await;
    env.clock.advance(Duration::from_secs(6));
    assert_err!(finish(task).await, StoreError::Timeout);
    faults.release_after("try_load_runnable");

    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_when_unlocked(env, &other_store, other, id).await;
    assert_eq!(view.data, data(1));
}

/// Invalid commands fail with an error naming the command and field, before reaching storage.
pub async fn invalid_commands_are_rejected_before_reaching_storage(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), Vec::new());
    let (id, key) = (InstanceId::new(), KeyId::new());
    let ownerless = store.create_handle_for(None, Some(id));
    let result = store.execute(&ownerless, create(), T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("Load"));

    let owner = env.owner(&store, None).await;
    let (unbound, bound) = (
        env.handle(&store, owner, None),
        env.handle(&store, owner, Some(id)),
    );
    let result = store.execute(&unbound, create(), T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("Load"));
    let complete_only = Save {
        complete: true,
        ..Save::data(data(1))
    };
    let result = store.execute(&bound, complete_only, T).await;
    assert_err!(result, StoreError::Invalid { what } if what.contains("complete"));
    let result = store.execute(&bound, LoadByKey::new(key), T).await;
    assert_err!(result, StoreError::AlreadyBoundToInstance { instance } if instance == id);
    let result = store.execute(&unbound, Command::TryLoadRunnable, T).await;
    assert_err!(result, StoreError::HostTypeRequired);

    for call in ["load", "save", "try_load_runnable"] {
        assert_eq!(faults.calls(call), 0, "no {call} reached storage");
    }
}

/// A handle freed by an unlocking save (or by `free`) runs no more commands.
pub async fn a_freed_handle_runs_no_more_commands(env: &Env) {
    let store = env.store();
    let (handle, _) = locked_instance(env, &store).await;
    ok_on(&store, &handle, Save::data(data(2)).and_unlock()).await;
    assert!(handle.is_freed(), "an unlocking save frees the handle");
    let result = store.execute(&handle, create(), T).await;
    assert!(result.is_err(), "a freed handle runs nothing: {result:?}");

    let owner = handle.owner().expect("bound to its owner");
    let freed = env.handle(&store, owner, Some(InstanceId::new()));
    freed.free();
    assert!(freed.is_freed());
    let result = store.execute(&freed, create(), T).await;
    assert!(result.is_err(), "a freed handle runs nothing: {result:?}");
}

/// A custom command that no extension provides is `CommandNotSupported`, naming it.
pub async fn an_unknown_custom_command_is_command_not_supported(env: &Env) {
    let store = env.store();
    env.owner(&store, None).await;
    let command = CustomCommand {
        name: "archive".into(),
        args: bag([("days", 30i64)]),
    };
    let result = store.execute(&store.create_handle(), command, T).await;
    assert_err!(result, StoreError::CommandNotSupported { command } if command == "archive");
}

/// Rejects saves of a `frozen` value, and counts the commands it sees succeed.
#[derive(Debug, Default)]
struct Freezer {
    succeeded: AtomicUsize,
}

#[async_trait::async_trait]
impl Extension for Freezer {
    fn name(&self) -> &str {
        "freezer"
    }

    fn before(
        &self,
        _: &CommandContext,
        command: &mut Command,
        _: &mut LoadGuards,
    ) -> Result<(), StoreError> {
        match command {
            Command::Save(s) if s.data.as_ref().is_some_and(|d| d.contains_key("frozen")) => Err(
                StoreError::invalid("freezer: Save: data: 'frozen' cannot be saved"),
            ),
            _ => Ok(()),
        }
    }

    fn after(&self, _: &CommandContext, _: &Command, _: &InstanceView) {
        self.succeeded.fetch_add(1, SeqCst);
    }
}

/// An extension that rejects a command stops it before storage: nothing happens, the handle
/// keeps its lock, and the extension's `after` does not see it.
pub async fn an_extension_can_reject_a_command_and_nothing_happens(env: &Env) {
    let freezer = Arc::new(Freezer::default());
    let (store, faults) = env.store_with(env.settings(), vec![freezer.clone()]);
    let (handle, _) = locked_instance(env, &store).await;
    let seen = freezer.succeeded.load(SeqCst);
    assert_eq!(seen, 3, "after sees CreateOwner, Load and Save");

    let rejected = store
        .execute(&handle, Save::data(bag([("frozen", true)])), T)
        .await;
    assert_err!(rejected, StoreError::Invalid { what } if what.contains("freezer"));
    assert_eq!(
        faults.calls("save"),
        1,
        "the rejected save never reached storage"
    );
    assert_eq!(
        freezer.succeeded.load(SeqCst),
        seen,
        "after skips rejected commands"
    );
    let view = ok_on(&store, &handle, Load::default()).await;
    assert_eq!(
        view.data,
        data(1),
        "the handle still holds the lock, unchanged"
    );
}

/// Adds an `audit:stamp` metadata change to every save.
#[derive(Debug)]
struct Stamper;

#[async_trait::async_trait]
impl Extension for Stamper {
    fn name(&self) -> &str {
        "stamper"
    }

    fn before(
        &self,
        _: &CommandContext,
        command: &mut Command,
        _: &mut LoadGuards,
    ) -> Result<(), StoreError> {
        if let Command::Save(save) = command {
            let stamp = MetadataChange::Set("stamped".into());
            save.metadata_changes.push(("audit:stamp".into(), stamp));
        }
        Ok(())
    }
}

/// Metadata an extension adds to a save is written by that same save (one provider call), and
/// not at all when the save fails.
pub async fn an_extension_can_add_metadata_to_every_save_in_the_same_transaction(env: &Env) {
    let (store, faults) = env.store_with(env.settings(), vec![Arc::new(Stamper)]);
    let owner = env.owner(&store, None).await;
    let stamped = bag([("audit:stamp", "stamped")]);
    let id = InstanceId::new();
    let handle = env.handle(&store, owner, Some(id));
    assert!(
        ok_on(&store, &handle, create()).await.metadata.is_empty(),
        "loads are left alone"
    );
    let view = ok_on(&store, &handle, Save::data(data(1))).await;
    assert_eq!(view.metadata, stamped);
    assert_eq!(faults.calls("save"), 1, "in the same save");

    // A failing save writes neither its own effects nor the extension's.
    let failing = env.handle(&store, owner, Some(InstanceId::new()));
    ok_on(&store, &failing, create()).await;
    let bad = Save {
        keys_to_complete: vec![KeyId::new()],
        ..Save::data(data(2))
    };
    let result = store.execute(&failing, bad, T).await;
    assert_err!(result, StoreError::InstanceKeyNotReady { .. });
    let view = ok_on(&store, &failing, create()).await;
    assert!(view.metadata.is_empty(), "the failed save stamped nothing");

    // Stored, not just shown: a store without the extension reads it back.
    ok_on(
        &store,
        &handle,
        Save {
            unlock: true,
            ..Save::default()
        },
    )
    .await;
    let other_store = env.store();
    let other = env.owner(&other_store, None).await;
    let view = load_when_unlocked(env, &other_store, other, id).await;
    assert_eq!(view.metadata, stamped);
}

/// Provides an `echo` command answering with its arguments and the handle's owner; records the
/// commands it executed.
#[derive(Debug, Default)]
struct Echo {
    executed: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Extension for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    async fn execute(
        &self,
        ctx: &CommandContext,
        command: &CustomCommand,
    ) -> Option<Result<InstanceView, StoreError>> {
        if command.name != "echo" {
            return None;
        }
        self.executed
            .lock()
            .expect("not poisoned")
            .push(command.name.clone());
        let mut view = InstanceView::default();
        view.owner = ctx.owner;
        view.data = command.args.clone();
        Some(Ok(view))
    }
}

/// An extension's own command runs through `execute` like any other; names it does not know are
/// still `CommandNotSupported`.
pub async fn an_extension_can_provide_its_own_command(env: &Env) {
    let echo = Arc::new(Echo::default());
    let store = env.store_with(env.settings(), vec![echo.clone()]).0;
    let owner = env.owner(&store, None).await;
    let args = bag([("greeting", "hello")]);
    let command = CustomCommand {
        name: "echo".into(),
        args: args.clone(),
    };
    let view = ok_on(&store, &store.create_handle(), command.clone()).await;
    assert_eq!(view.data, args);
    assert_eq!(
        view.owner,
        Some(owner),
        "the extension sees the handle's owner"
    );
    assert_eq!(*echo.executed.lock().expect("not poisoned"), ["echo"]);

    let unknown = CustomCommand {
        name: "shout".into(),
        args,
    };
    let result = store.execute(&store.create_handle(), unknown, T).await;
    assert_err!(result, StoreError::CommandNotSupported { command } if command == "shout");
    let plain = env.store();
    env.owner(&plain, None).await;
    let result = plain.execute(&plain.create_handle(), command, T).await;
    assert_err!(result, StoreError::CommandNotSupported { .. }); // not without the extension
}

/// Lists this module's cases for [`crate::provider_tests!`] (unformatted: one line per case).
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! runtime_cases {
    ($make:path) => {
        $crate::__case!($make, runtime::a_second_command_on_a_busy_handle_is_command_overlap);
        $crate::__case!($make, runtime::a_timed_out_save_leaves_no_partial_effect_and_releases_the_lock);
        $crate::__case!($make, runtime::a_timed_out_load_frees_the_handle_and_leaves_the_instance_takeable);
        $crate::__case!($make, runtime::a_load_by_key_cut_off_after_taking_the_lock_releases_it);
        $crate::__case!($make, runtime::a_try_load_runnable_cut_off_after_taking_the_lock_releases_it);
        $crate::__case!($make, runtime::invalid_commands_are_rejected_before_reaching_storage);
        $crate::__case!($make, runtime::a_freed_handle_runs_no_more_commands);
        $crate::__case!($make, runtime::an_unknown_custom_command_is_command_not_supported);
        $crate::__case!($make, runtime::an_extension_can_reject_a_command_and_nothing_happens);
        $crate::__case!($make, runtime::an_extension_can_add_metadata_to_every_save_in_the_same_transaction);
        $crate::__case!($make, runtime::an_extension_can_provide_its_own_command);
    };
}
