//! The shadow model of the oracle's state the driver needs to stay deterministic.

use instore::{ExecutionStatus, InstanceState, InstanceView, OwnerId, StoreError, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::compare::{NInst, NOwner};
use super::driver::{Driver, ORACLE};
use super::ops::Op;

// The shadow model: just enough of the oracle's state to know when `TryLoadRunnable` faces a
// tie, and when a freed handle's lock is released in the background.

#[derive(Debug, Clone)]
pub(super) struct OwnerModel {
    pub(super) host_type: Option<String>,
    /// Lost or deleted, as the runtime sees it: its handles answer `OwnerLost`.
    pub(super) lost: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Shadow {
    pub(super) state: InstanceState,
    pub(super) status: ExecutionStatus,
    pub(super) timer: Option<Timestamp>,
    suspended: bool,
    pub(super) host_type: Option<String>,
    /// The owner holding the lock in storage (alive or not).
    holder: Option<usize>,
    /// While unlocked: since when it is runnable.
    ready_at: Option<Timestamp>,
}

impl Shadow {
    pub(super) fn release(&mut self, now: Timestamp) {
        self.holder = None;
        self.ready_at = if self.state != InstanceState::Initialized || self.suspended {
            None
        } else if self.status == ExecutionStatus::Executing {
            Some(now)
        } else {
            self.timer
        };
    }
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) owners: Vec<OwnerModel>,
    pub(super) shadow: BTreeMap<NInst, Shadow>,
    pub(super) expected_unlocks: u64,
    /// Clock moved by small steps since the start or the last lease jump.
    pub(super) since_origin: Duration,
}

pub(super) enum Runnable {
    /// No candidate: the oracle must find nothing.
    Nothing,
    /// The one candidate runnable longest.
    Unique(NInst),
    /// Several candidates runnable since the same instant: unspecified which comes first.
    Tie,
}

impl Driver {
    /// What `TryLoadRunnable` on slot `h` must find, by the shadow model; `None` if the
    /// command will not get as far as looking.
    pub(super) async fn runnable(&mut self, h: u8) -> Option<Runnable> {
        let handle = self.sides[ORACLE].handle(h)?;
        if handle.is_freed() || handle.instance().is_some() {
            return None;
        }
        let me = self.handle_owner(h)?;
        let owner = &self.model.owners[me];
        if owner.lost {
            return None;
        }
        let host_type = owner.host_type.clone()?;
        let now = self.now();
        let stored: HashMap<OwnerId, Timestamp> = self.sides[ORACLE]
            .store
            .provider()
            .owners()
            .await
            .ok()?
            .into_iter()
            .map(|o| (o.id, o.lease_expires_at))
            .collect();
        let lease_end = |o: usize| {
            stored
                .get(&self.sides[ORACLE].owners[o])
                .copied()
                .unwrap_or(Timestamp::UNIX_EPOCH)
        };
        let mut candidates: Vec<(Timestamp, NInst)> = self
            .model
            .shadow
            .iter()
            .filter(|(_, s)| {
                s.state == InstanceState::Initialized
                    && !s.suspended
                    && s.host_type.as_deref() == Some(host_type.as_str())
                    && s.holder != Some(me)
            })
            .filter_map(|(i, s)| {
                let since = match s.holder {
                    None => s.ready_at,
                    Some(holder) => Some(lease_end(holder)),
                };
                since.filter(|t| *t <= now).map(|t| (t, *i))
            })
            .collect();
        candidates.sort();
        Some(match candidates.as_slice() {
            [] => Runnable::Nothing,
            [(a, _), (b, _), ..] if a == b => Runnable::Tie,
            [(_, i), ..] => Runnable::Unique(*i),
        })
    }

    /// Updates the model from the oracle's result of `op` (equal to the subject's).
    pub(super) fn learn(&mut self, op: &Op, oracle: &Result<InstanceView, StoreError>) {
        let view = match oracle {
            Err(StoreError::OwnerLost { owner }) => {
                if let NOwner::O(i) = self.sides[ORACLE].owner(*owner) {
                    self.model.owners[i].lost = true;
                }
                return;
            }
            Err(_) => return,
            Ok(view) => view,
        };
        if let Op::DeleteOwner { .. } = op {
            if let Some(NOwner::O(i)) = view.owner.map(|o| self.sides[ORACLE].owner(o)) {
                self.model.owners[i].lost = true;
            }
            return;
        }
        let (Some(id), Some(NOwner::O(me))) = (
            view.instance,
            view.owner.map(|o| self.sides[ORACLE].owner(o)),
        ) else {
            return;
        };
        let now = self.now();
        let i = self.sides[ORACLE].inst(id);
        let mut shadow = Shadow {
            state: view.state,
            status: view.status.unwrap_or_default(),
            timer: view.timer,
            suspended: view.suspension.is_some(),
            host_type: view.host_type.clone(),
            holder: Some(me),
            ready_at: None,
        };
        if view.lock_version.is_none() {
            shadow.release(now);
        }
        if view.state == InstanceState::Completed && self.setup.delete_all {
            self.model.shadow.remove(&i);
        } else {
            self.model.shadow.insert(i, shadow);
        }
    }
}
