//! Runnable detection and event delivery (SPEC §8): pushed, not polled.
//!
//! One task per store asks the provider when each live host type next has a runnable instance.
//! Runnable now → every live owner of that host type is signalled. Otherwise it sleeps until the
//! earliest of: that moment (a timer due, a holder's lease ending), a push from the provider, a
//! change in the owner set, or the fallback poll.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, InstanceEvent};
use crate::{InstanceHandle, StoreError, Timestamp};

pub(super) async fn run(inner: Arc<Inner>) {
    let mut wake_ups = inner.provider.wake_ups();
    let mut wake_ups_open = true;
    loop {
        let next = detect_once(&inner).await;
        let poll = inner.clock.now().plus(inner.settings.detection_poll);
        let deadline = next.map_or(poll, |t| t.min(poll));
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            changed = wake_ups.changed(), if wake_ups_open => wake_ups_open = changed.is_ok(),
            _ = inner.rescan.notified() => {}
            _ = inner.clock.sleep_until(deadline) => {}
        }
    }
}

/// Signals host types with runnable instances; returns the next future moment worth a look.
async fn detect_once(inner: &Inner) -> Option<Timestamp> {
    let host_types: BTreeSet<String> = {
        let state = inner.state();
        state
            .owners
            .values()
            .filter(|e| !e.lost)
            .filter_map(|e| e.host_type.clone())
            .collect()
    };
    let mut next: Option<Timestamp> = None;
    for host_type in host_types {
        match inner.provider.next_runnable(&host_type).await {
            Ok(Some(at)) if at <= inner.clock.now() => inner.signal(&host_type),
            Ok(Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%host_type, error = %e, "runnable detection failed; will retry")
            }
        }
    }
    next
}

impl Inner {
    fn signal(&self, host_type: &str) {
        let state = self.state();
        for entry in state
            .owners
            .values()
            .filter(|e| !e.lost && e.host_type.as_deref() == Some(host_type))
        {
            entry.signal.send_modify(|s| {
                s.runnable = true;
                s.seq += 1;
            });
        }
    }

    /// The current signal sequence of an owner (read before `TryLoadRunnable`).
    pub(super) fn signal_seq(&self, owner: crate::OwnerId) -> u64 {
        self.state()
            .owners
            .get(&owner)
            .map_or(0, |e| e.signal.borrow().seq)
    }

    /// Resets the runnable signal after `TryLoadRunnable` found nothing, unless the detector
    /// signalled again meanwhile.
    pub(super) fn reset_signal(&self, owner: crate::OwnerId, seen_seq: u64) {
        let state = self.state();
        if let Some(entry) = state.owners.get(&owner) {
            entry.signal.send_if_modified(|s| {
                let reset = s.seq == seen_seq && s.runnable;
                if reset {
                    s.runnable = false;
                }
                reset
            });
        }
    }

    pub(super) async fn wait_for_events(
        self: &Arc<Self>,
        handle: &InstanceHandle,
        timeout: Duration,
    ) -> Result<Vec<InstanceEvent>, StoreError> {
        let shared = &handle.shared;
        self.check_handle(shared)?;
        let owner = {
            let mut b = shared.state();
            if b.freed {
                return Err(StoreError::invalid(
                    "the handle is freed; create a new handle to wait for events",
                ));
            }
            if b.waiting {
                return Err(StoreError::CommandOverlap);
            }
            let Some(owner) = b.owner else {
                return Err(StoreError::invalid(
                    "wait_for_events needs a handle bound to an owner; run CreateOwner first",
                ));
            };
            b.waiting = true;
            owner
        };
        struct Waiting<'a>(&'a super::handle::HandleShared);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.state().waiting = false;
            }
        }
        let _waiting = Waiting(shared);

        let ctx = self.check_owner(owner)?;
        if ctx.host_type.is_none() {
            return Err(StoreError::HostTypeRequired);
        }
        let mut signal = {
            let state = self.state();
            let Some(entry) = state.owners.get(&owner) else {
                return Err(StoreError::OwnerLost { owner });
            };
            entry.signal.subscribe()
        };
        let deadline = self.clock.now().plus(timeout);
        tokio::select! {
            seen = signal.wait_for(|s| s.runnable || s.lost) => match seen {
                Ok(s) if s.lost => Err(StoreError::OwnerLost { owner }),
                Ok(_) => Ok(vec![InstanceEvent::HasRunnableWorkflow]),
                Err(_) => Err(StoreError::OwnerLost { owner }),
            },
            _ = shared.freed.cancelled() => Ok(Vec::new()),
            _ = self.shutdown.cancelled() => Ok(Vec::new()),
            _ = self.clock.sleep_until(deadline) => Ok(Vec::new()),
        }
    }
}
