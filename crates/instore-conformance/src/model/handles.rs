//! Handle slots on both sides: running commands on them, replacing and freeing them, and
//! waiting for the background work freeing starts.

use instore::{Command, InstanceView, StoreError};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::driver::{Driver, Need, Ran, ORACLE};
use super::side::{Counts, Side};
use super::{BACKGROUND_WAIT, T};

impl Driver {
    /// Executes a command on slot `h` of both sides (`None` if the slot is empty).
    async fn exec(
        &mut self,
        h: u8,
        make: impl Fn(&Side) -> Command,
    ) -> Option<[Result<InstanceView, StoreError>; 2]> {
        let mut results = Vec::with_capacity(2);
        for side in &self.sides {
            let handle = side.handle(h)?;
            results.push(side.store.execute(handle, make(side), T).await);
        }
        results.try_into().ok()
    }

    pub(super) async fn command(
        &mut self,
        h: u8,
        need: Need,
        make: impl Fn(&Side) -> Command,
    ) -> Result<Ran, String> {
        self.ensure(h, need).await?;
        Ok(match self.exec(h, make).await {
            Some(results) => Ran::Results(Box::new(results)),
            None => Ran::Skipped("empty slot"),
        })
    }

    /// Makes slot `h` hold a handle fit for a command that needs `need`.
    pub(super) async fn ensure(&mut self, h: u8, need: Need) -> Result<(), String> {
        let replace = match self.sides[ORACLE].handle(h) {
            None => true,
            Some(x) => {
                x.is_freed()
                    || (x.owner().is_none() && !self.model.owners.is_empty())
                    || (self
                        .handle_owner(h)
                        .is_some_and(|o| self.model.owners[o].lost)
                        && self.live_owners() > 0)
                    || match need {
                        Need::Instance => x.instance().is_none(),
                        Need::NoInstance => x.instance().is_some(),
                        Need::Any => false,
                    }
            }
        };
        if replace {
            let owner = self.pick_owner(Some(h));
            let instance = (need == Need::Instance).then_some(h);
            self.put_handle(h, owner, instance).await?;
        }
        Ok(())
    }

    /// Puts a new handle bound to owner index `owner` and instance index `instance` in slot
    /// `h`, freeing the one there.
    pub(super) async fn put_handle(
        &mut self,
        h: u8,
        owner: Option<usize>,
        instance: Option<u8>,
    ) -> Result<(), String> {
        self.free(h, true).await?;
        for side in &mut self.sides {
            let owner = owner.map(|i| side.owners[i]);
            let instance = instance.map(|i| side.resolve_instance(i));
            side.handles[usize::from(h)] = Some(side.store.create_handle_for(owner, instance));
        }
        Ok(())
    }

    /// Frees the handle in slot `h` on both sides (and takes it out if `remove`), waiting for
    /// the background unlock it starts.
    pub(super) async fn free(&mut self, h: u8, remove: bool) -> Result<(), String> {
        let Some(handle) = self.sides[ORACLE].handle(h) else {
            return Ok(());
        };
        let owner = self.handle_owner(h);
        let releases = !handle.is_freed()
            && handle.lock_version().is_some()
            && owner.is_some_and(|o| !self.model.owners[o].lost);
        let instance = handle.instance();
        for side in &mut self.sides {
            if let Some(handle) = side.handle(h) {
                handle.free();
            }
            if remove {
                side.handles[usize::from(h)] = None;
            }
        }
        if !releases {
            return Ok(());
        }
        self.model.expected_unlocks += 1;
        let expected = self.model.expected_unlocks;
        self.wait_for("the background unlock of a freed handle", |_, c| {
            c.unlocks.load(Ordering::SeqCst) >= expected
        })
        .await?;
        if let Some(id) = instance {
            let now = self.now();
            let i = self.sides[ORACLE].inst(id);
            if let Some(s) = self.model.shadow.get_mut(&i) {
                s.release(now);
            }
        }
        Ok(())
    }

    /// Waits (real time, bounded) until `done(side, counts)` holds for the subject's counts,
    /// then for the oracle's.
    pub(super) async fn wait_for(
        &self,
        what: &str,
        mut done: impl FnMut(usize, &Counts) -> bool,
    ) -> Result<(), String> {
        let started = Instant::now();
        for (i, (name, side)) in ["subject", "oracle"].iter().zip(&self.sides).enumerate() {
            while !done(i, &side.counts) {
                if started.elapsed() > BACKGROUND_WAIT {
                    let error = side
                        .counts
                        .unlock_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    return Err(format!(
                        "the {name} store did not finish {what} within {BACKGROUND_WAIT:?} \
                         (last failed unlock: {error:?})"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }
}
