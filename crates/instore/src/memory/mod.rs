//! The memory provider: the reference implementation (SPEC §1 "non-durable"). A `Mutex` over
//! plain maps, short and obvious, because it is the oracle of the model-based tests and of the
//! query and control conformance cases. Each method takes the lock once, checks everything, then
//! mutates: atomic by construction.
//!
//! This file holds the storage and the persistence side; `query.rs` the read side (SPEC §12)
//! and `control.rs` the control queue (SPEC §10), both over the same [`Mem`].

mod control;
mod query;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::encoding::{decode, encode, encode_within, EncodedBag, EncodingSettings};
use crate::{
    apply_changes, Activatable, CompletionAction, ControlCommand, ErrorLogEntry, ExecutionStatus,
    InstanceId, InstanceSnapshot, InstanceState, KeyId, KeyState, KeyView, LeaseState, LoadGuards,
    LoadRequest, LoadTarget, NewKey, NewOwner, OwnerId, OwnerInfo, PersistenceProvider,
    PropertyBag, RunnableRequest, SaveRequest, SharedClock, StoreError, SuspendChange, Suspension,
    SystemClock, Timestamp, Uuid, Value, WakeUps,
};

/// The in-memory provider. Everything is lost when the process ends.
#[derive(Debug)]
pub struct MemoryProvider {
    clock: SharedClock,
    state: Mutex<Mem>,
    wake: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Mem {
    owners: HashMap<OwnerId, OwnerInfo>,
    instances: HashMap<InstanceId, Row>,
    keys: HashMap<KeyId, KeyRow>,
    /// The control queue: at most one command per instance (SPEC §10 rule 3).
    queue: HashMap<InstanceId, QueueRow>,
    /// The last queue position handed out (positions grow with every enqueue).
    last_position: u64,
    /// The error log: at most one entry per instance (SPEC §10 rule 8).
    errors: HashMap<InstanceId, ErrorLogEntry>,
}

#[derive(Debug, Clone)]
struct Row {
    state: InstanceState,
    data: EncodedBag,
    metadata: EncodedBag,
    lock_owner: Option<OwnerId>,
    /// The owner that locked it last (kept after unlock): the epoch grows only when the lock
    /// passes to a different owner.
    last_lock_owner: Option<OwnerId>,
    lock_version: u64,
    status: ExecutionStatus,
    timer: Option<Timestamp>,
    bookmarks: Vec<String>,
    suspension: Option<Suspension>,
    host_type: Option<String>,
    /// While unlocked: since when it is runnable (unlock time if `Executing`, else its timer).
    ready_at: Option<Timestamp>,
    keys: BTreeSet<KeyId>,
    /// When the row was created (never changes: the query order and cursor rely on it).
    created_at: Timestamp,
    /// `created_at`, then the time of every successful save.
    updated_at: Timestamp,
    /// The machine of the owner that created the row, then of each save's owner.
    updated_by: Option<String>,
    /// When the current lock holder took the lock (kept when it reclaims its own lock).
    locked_since: Option<Timestamp>,
    /// Promoted values (SPEC §12 "Promotions"), replaced by each save that carries them.
    promoted: BTreeMap<String, Value>,
}

/// A queued control command (decision 0007 "The control queue").
#[derive(Debug, Clone)]
struct QueueRow {
    position: u64,
    command: ControlCommand,
    enqueued_at: Timestamp,
    /// Failed attempts so far.
    attempts: u32,
    /// The lock the last read handed out, until the command is completed or abandoned.
    lock: Option<Uuid>,
    locked_until: Option<Timestamp>,
    /// The machine of the reader that holds (or held) the lock.
    reader: Option<String>,
    /// The last failure's message.
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct KeyRow {
    instance: InstanceId,
    state: KeyState,
    metadata: PropertyBag,
}

impl MemoryProvider {
    /// A provider on the system clock.
    pub fn new() -> Arc<Self> {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A provider judging time by `clock` (a [`crate::ManualClock`] in tests).
    pub fn with_clock(clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            state: Mutex::new(Mem::default()),
            wake: watch::Sender::new(0),
        })
    }

    /// Damages an instance's stored data so that it no longer decodes (for tests of corrupt-row
    /// handling). Returns false if there is no such instance.
    pub fn corrupt_instance_data(&self, instance: InstanceId) -> bool {
        let mut mem = self.mem();
        match mem.instances.get_mut(&instance) {
            Some(row) => {
                row.data.bytes = vec![0xff, 0xff, 0xff];
                true
            }
            None => false,
        }
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        // Every method checks before it mutates, so a panic cannot leave half an update behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn empty_bag() -> EncodedBag {
    encode(&PropertyBag::new(), &EncodingSettings::default())
}

impl Mem {
    fn alive(&self, owner: OwnerId, now: Timestamp) -> bool {
        self.owners
            .get(&owner)
            .is_some_and(|o| o.lease_expires_at > now)
    }

    fn check_caller(&self, owner: OwnerId, now: Timestamp) -> Result<(), StoreError> {
        if self.alive(owner, now) {
            Ok(())
        } else {
            Err(StoreError::OwnerLost { owner })
        }
    }

    fn check_held(
        &self,
        owner: OwnerId,
        id: InstanceId,
        version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let holds = self
            .instances
            .get(&id)
            .is_some_and(|r| r.lock_owner == Some(owner) && r.lock_version == version);
        if holds && self.alive(owner, now) {
            Ok(())
        } else {
            Err(StoreError::LockLost { instance: id })
        }
    }

    /// Whether `owner` may take the lock of `id` (SPEC §5), without changing anything.
    fn can_acquire(
        &self,
        owner: OwnerId,
        id: InstanceId,
        busy: &[InstanceId],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let Some(row) = self.instances.get(&id) else {
            return Ok(());
        };
        if row.state == InstanceState::Completed {
            return Err(StoreError::InstanceComplete { instance: id });
        }
        match row.lock_owner {
            Some(holder) if holder == owner && busy.contains(&id) => {
                Err(StoreError::HandleConflict { instance: id })
            }
            Some(holder) if holder != owner && self.alive(holder, now) => {
                Err(StoreError::InstanceLocked {
                    instance: id,
                    owner: holder,
                    owner_metadata: self
                        .owners
                        .get(&holder)
                        .map(|o| o.metadata.clone())
                        .unwrap_or_default(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Takes the lock (after [`Mem::can_acquire`]), creating an uninitialized instance if needed.
    fn acquire(&mut self, owner: OwnerId, id: InstanceId, now: Timestamp) {
        let host_type = self.owners.get(&owner).and_then(|o| o.host_type.clone());
        let machine = self.owners.get(&owner).map(|o| o.machine.clone());
        let row = self.instances.entry(id).or_insert_with(|| Row {
            state: InstanceState::Uninitialized,
            data: empty_bag(),
            metadata: empty_bag(),
            lock_owner: None,
            last_lock_owner: Some(owner),
            lock_version: 1,
            status: ExecutionStatus::Idle,
            timer: None,
            bookmarks: Vec::new(),
            suspension: None,
            host_type: None,
            ready_at: None,
            keys: BTreeSet::new(),
            created_at: now,
            updated_at: now,
            updated_by: machine,
            locked_since: None,
            promoted: BTreeMap::new(),
        });
        if row.last_lock_owner != Some(owner) {
            row.lock_version += 1;
        }
        if row.lock_owner != Some(owner) {
            row.locked_since = Some(now);
        }
        row.lock_owner = Some(owner);
        row.last_lock_owner = Some(owner);
        row.ready_at = None;
        if host_type.is_some() {
            row.host_type = host_type;
        }
    }

    /// Releases the lock; returns whether the instance is (or will be) runnable.
    fn release(&mut self, id: InstanceId, now: Timestamp) -> bool {
        let Some(row) = self.instances.get_mut(&id) else {
            return false;
        };
        row.lock_owner = None;
        row.locked_since = None;
        row.ready_at = if row.state != InstanceState::Initialized || row.suspension.is_some() {
            None
        } else if row.status == ExecutionStatus::Executing {
            Some(now)
        } else {
            row.timer
        };
        row.ready_at.is_some()
    }

    /// Since when the instance is runnable (maybe in the future), per SPEC §8.
    fn runnable_since(&self, row: &Row) -> Option<Timestamp> {
        if row.state != InstanceState::Initialized || row.suspension.is_some() {
            return None;
        }
        match row.lock_owner {
            None => row.ready_at,
            Some(holder) => Some(
                self.owners
                    .get(&holder)
                    .map_or(Timestamp::UNIX_EPOCH, |o| o.lease_expires_at),
            ),
        }
    }

    fn snapshot(&self, id: InstanceId, locked: bool) -> Result<InstanceSnapshot, StoreError> {
        let row = self
            .instances
            .get(&id)
            .ok_or(StoreError::InstanceNotReady { instance: id })?;
        let keys = row
            .keys
            .iter()
            .filter_map(|k| {
                self.keys.get(k).map(|r| {
                    (
                        *k,
                        KeyView {
                            state: r.state,
                            metadata: r.metadata.clone(),
                        },
                    )
                })
            })
            .collect();
        Ok(InstanceSnapshot {
            instance: id,
            state: row.state,
            lock_version: row.lock_version,
            locked,
            data: decode(row.data.encoding, &row.data.bytes)?,
            metadata: decode(row.metadata.encoding, &row.metadata.bytes)?,
            keys,
            status: row.status,
            timer: row.timer,
            bookmarks: row.bookmarks.clone(),
            suspension: row.suspension.clone(),
            host_type: row.host_type.clone(),
        })
    }

    fn check_guards(&self, id: InstanceId, guards: LoadGuards) -> Result<(), StoreError> {
        if let Some(s) = self.instances.get(&id).and_then(|r| r.suspension.as_ref()) {
            if guards.reject_suspended {
                return Err(StoreError::InstanceSuspended {
                    instance: id,
                    reason: s.reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that none of `keys` is present (associating a present key is a collision).
    fn check_new_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
        for k in keys {
            if let Some(row) = self.keys.get(&k.key) {
                return Err(StoreError::InstanceKeyCollision {
                    key: k.key,
                    instance: row.instance,
                });
            }
        }
        Ok(())
    }

    fn associate(&mut self, id: InstanceId, keys: &[NewKey]) {
        for k in keys {
            self.keys.insert(
                k.key,
                KeyRow {
                    instance: id,
                    state: KeyState::Associated,
                    metadata: k.metadata.clone(),
                },
            );
            if let Some(row) = self.instances.get_mut(&id) {
                row.keys.insert(k.key);
            }
        }
    }

    /// Removes the instance and everything that belongs to it: keys, promoted values (in the
    /// row), queued command, error-log entry. Returns whether it existed.
    fn remove_instance(&mut self, id: InstanceId) -> bool {
        self.queue.remove(&id);
        self.errors.remove(&id);
        let Some(row) = self.instances.remove(&id) else {
            return false;
        };
        for k in row.keys {
            self.keys.remove(&k);
        }
        true
    }

    /// Removes owners whose lease has ended and that hold no lock.
    fn clean_up_owners(&mut self, now: Timestamp) {
        let holders: HashSet<OwnerId> = self
            .instances
            .values()
            .filter_map(|r| r.lock_owner)
            .collect();
        self.owners
            .retain(|id, o| o.lease_expires_at > now || holders.contains(id));
    }

    fn load_by_id(
        &mut self,
        owner: OwnerId,
        id: InstanceId,
        accept_uninitialized: bool,
        request: &LoadRequest,
        now: Timestamp,
    ) -> Result<InstanceSnapshot, StoreError> {
        match self.instances.get(&id) {
            None if !accept_uninitialized => {
                return Err(StoreError::InstanceNotReady { instance: id })
            }
            None => {}
            Some(row) if row.state == InstanceState::Completed => {
                return Err(StoreError::InstanceComplete { instance: id })
            }
            Some(row) if row.state == InstanceState::Uninitialized && !accept_uninitialized => {
                return Err(StoreError::InstanceNotReady { instance: id })
            }
            Some(_) => self.check_guards(id, request.guards)?,
        }
        self.can_acquire(owner, id, &request.busy, now)?;
        // Decode before taking the lock, so a damaged row changes nothing.
        if self.instances.contains_key(&id) {
            self.snapshot(id, true)?;
        }
        self.acquire(owner, id, now);
        self.snapshot(id, true)
    }

    fn load_by_key(
        &mut self,
        owner: OwnerId,
        request: &LoadRequest,
        now: Timestamp,
    ) -> Result<InstanceSnapshot, StoreError> {
        let LoadTarget::Key {
            key,
            accept_uninitialized,
            create_with_id,
            keys_to_associate,
        } = &request.target
        else {
            return Err(StoreError::invalid("load_by_key called without a key"));
        };
        match self.keys.get(key) {
            Some(k) if k.state == KeyState::Completed => {
                Err(StoreError::InstanceKeyComplete { key: *key })
            }
            Some(k) => {
                let id = k.instance;
                // Check everything first: the load, then the keys to associate.
                match self.instances.get(&id) {
                    None => return Err(StoreError::InstanceKeyNotReady { key: *key }),
                    Some(row) if row.state == InstanceState::Completed => {
                        return Err(StoreError::InstanceComplete { instance: id })
                    }
                    Some(row)
                        if row.state == InstanceState::Uninitialized && !accept_uninitialized =>
                    {
                        return Err(StoreError::InstanceNotReady { instance: id })
                    }
                    Some(_) => self.check_guards(id, request.guards)?,
                }
                self.can_acquire(owner, id, &request.busy, now)?;
                self.check_new_keys(keys_to_associate)?;
                self.snapshot(id, true)?;
                self.acquire(owner, id, now);
                self.associate(id, keys_to_associate);
                self.snapshot(id, true)
            }
            None if !accept_uninitialized => Err(StoreError::InstanceKeyNotReady { key: *key }),
            None => {
                let id = create_with_id.unwrap_or_default();
                if let Some(row) = self.instances.get(&id) {
                    if row.state != InstanceState::Uninitialized {
                        return Err(StoreError::InstanceCollision { instance: id });
                    }
                    self.check_guards(id, request.guards)?;
                    self.snapshot(id, true)?;
                }
                // The lookup key first; with `create_with_id` it may be listed among the keys to
                // associate, which then gives its metadata.
                let lookup = keys_to_associate
                    .iter()
                    .find(|k| k.key == *key)
                    .cloned()
                    .unwrap_or_else(|| NewKey::from(*key));
                let mut new_keys = vec![lookup];
                new_keys.extend(keys_to_associate.iter().filter(|k| k.key != *key).cloned());
                self.can_acquire(owner, id, &request.busy, now)?;
                self.check_new_keys(&new_keys)?;
                self.acquire(owner, id, now);
                self.associate(id, &new_keys);
                self.snapshot(id, true)
            }
        }
    }

    /// SPEC §6.4. Checks every effect, then applies them all.
    fn save(
        &mut self,
        owner: OwnerId,
        request: &SaveRequest,
        now: Timestamp,
    ) -> Result<(InstanceSnapshot, bool), StoreError> {
        let id = request.instance;
        let save = &request.save;
        match request.held_version {
            Some(v) => self.check_held(owner, id, v, now)?,
            None => self.can_acquire(owner, id, &request.busy, now)?,
        }
        // What the save must read has to decode, before anything changes: the metadata it
        // merges into (below), and the data it keeps if it brings none.
        if let (None, Some(row)) = (&save.data, self.instances.get(&id)) {
            decode(row.data.encoding, &row.data.bytes)?;
        }

        // Keys, in order: associate, complete, free — simulated on an overlay first.
        let mut overlay: HashMap<KeyId, Option<KeyState>> = HashMap::new();
        let current = |overlay: &HashMap<KeyId, Option<KeyState>>,
                       k: &KeyId|
         -> Option<(InstanceId, KeyState)> {
            match overlay.get(k) {
                Some(state) => state.map(|s| (id, s)),
                None => self.keys.get(k).map(|r| (r.instance, r.state)),
            }
        };
        for k in &save.keys_to_associate {
            if let Some((other, _)) = current(&overlay, &k.key) {
                return Err(StoreError::InstanceKeyCollision {
                    key: k.key,
                    instance: other,
                });
            }
            overlay.insert(k.key, Some(KeyState::Associated));
        }
        for k in &save.keys_to_complete {
            match current(&overlay, k) {
                Some((i, KeyState::Associated)) if i == id => {
                    overlay.insert(*k, Some(KeyState::Completed));
                }
                Some((i, KeyState::Completed)) if i == id => {
                    return Err(StoreError::InstanceKeyComplete { key: *k })
                }
                _ => return Err(StoreError::InstanceKeyNotReady { key: *k }),
            }
        }
        for k in &save.keys_to_free {
            match current(&overlay, k) {
                Some((i, KeyState::Completed)) if i == id => {
                    overlay.insert(*k, None);
                }
                _ => return Err(StoreError::InstanceKeyNotReady { key: *k }),
            }
        }

        // Data and metadata, within the size limit.
        let rules = &request.rules;
        let existing = self.instances.get(&id);
        let mut metadata = match existing {
            Some(row) => decode(row.metadata.encoding, &row.metadata.bytes)?,
            None => PropertyBag::new(),
        };
        apply_changes(&mut metadata, &save.metadata_changes);
        let (data, metadata) = match (&save.data, existing) {
            (Some(data), _) => {
                let (d, m) =
                    encode_within(data, &metadata, rules.max_payload_bytes, &rules.encoding)?;
                (Some(d), m)
            }
            (None, existing) => {
                let data_len = existing.map_or(0, |r| r.data.logical_len);
                let limit = rules.max_payload_bytes.saturating_sub(data_len);
                let (_, m) = encode_within(&PropertyBag::new(), &metadata, limit, &rules.encoding)
                    .map_err(|e| match e {
                        StoreError::PayloadTooLarge { size, .. } => StoreError::PayloadTooLarge {
                            size: size + data_len,
                            limit: rules.max_payload_bytes,
                        },
                        other => other,
                    })?;
                (None, m)
            }
        };

        // Everything checked: apply.
        if request.held_version.is_none() {
            self.acquire(owner, id, now);
        }
        for (key, state) in &overlay {
            match state {
                Some(KeyState::Associated) => {
                    let metadata = save
                        .keys_to_associate
                        .iter()
                        .find(|k| k.key == *key)
                        .map(|k| k.metadata.clone())
                        .unwrap_or_default();
                    self.keys.insert(
                        *key,
                        KeyRow {
                            instance: id,
                            state: KeyState::Associated,
                            metadata,
                        },
                    );
                    if let Some(row) = self.instances.get_mut(&id) {
                        row.keys.insert(*key);
                    }
                }
                Some(KeyState::Completed) => {
                    let metadata = self
                        .keys
                        .get(key)
                        .map(|r| r.metadata.clone())
                        .or_else(|| {
                            save.keys_to_associate
                                .iter()
                                .find(|k| k.key == *key)
                                .map(|k| k.metadata.clone())
                        })
                        .unwrap_or_default();
                    self.keys.insert(
                        *key,
                        KeyRow {
                            instance: id,
                            state: KeyState::Completed,
                            metadata,
                        },
                    );
                    if let Some(row) = self.instances.get_mut(&id) {
                        row.keys.insert(*key);
                    }
                }
                None => {
                    self.keys.remove(key);
                    if let Some(row) = self.instances.get_mut(&id) {
                        row.keys.remove(key);
                    }
                }
            }
        }
        let machine = self.owners.get(&owner).map(|o| o.machine.clone());
        let row = self
            .instances
            .get_mut(&id)
            .ok_or(StoreError::InstanceNotReady { instance: id })?;
        row.metadata = metadata;
        row.updated_at = now;
        row.updated_by = machine;
        if let Some(promoted) = &request.promoted {
            row.promoted = promoted.clone();
        }
        if let Some(data) = data {
            row.data = data;
            row.state = InstanceState::Initialized;
            row.timer = save.timer;
            row.status = save.status;
            row.bookmarks = save.bookmarks.clone();
        }
        match &save.suspend {
            SuspendChange::Unchanged => {}
            SuspendChange::Suspend { reason, exception } => {
                row.suspension = Some(Suspension {
                    reason: reason.clone(),
                    exception: exception.clone(),
                })
            }
            SuspendChange::Unsuspend => row.suspension = None,
        }
        let mut runnable = false;
        if save.complete {
            row.state = InstanceState::Completed;
            row.timer = None;
            let keys: Vec<KeyId> = row.keys.iter().copied().collect();
            for k in keys {
                if let Some(key) = self.keys.get_mut(&k) {
                    key.state = KeyState::Completed;
                }
            }
        }
        if save.unlock {
            runnable = self.release(id, now);
        }
        let snapshot = self.snapshot(id, !save.unlock)?;
        if save.complete && rules.completion == CompletionAction::DeleteAll {
            self.remove_instance(id);
        }
        Ok((snapshot, runnable))
    }
}

#[async_trait::async_trait]
impl PersistenceProvider for MemoryProvider {
    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn wake_ups(&self) -> WakeUps {
        self.wake.subscribe()
    }

    async fn create_owner(&self, owner: NewOwner) -> Result<OwnerInfo, StoreError> {
        let now = self.clock.now();
        let mut mem = self.mem();
        mem.clean_up_owners(now);
        let info = owner.register(now);
        mem.owners.insert(info.id, info.clone());
        Ok(info)
    }

    async fn renew_lease(&self, owner: OwnerId, lease: Duration) -> Result<LeaseState, StoreError> {
        let now = self.clock.now();
        let mut mem = self.mem();
        Ok(match mem.owners.get_mut(&owner) {
            None => LeaseState::Missing,
            Some(o) if o.lease_expires_at <= now => LeaseState::Expired,
            Some(o) => {
                o.lease_expires_at = now.plus(lease);
                LeaseState::Renewed {
                    expires_at: o.lease_expires_at,
                }
            }
        })
    }

    async fn delete_owner(&self, owner: OwnerId) -> Result<(), StoreError> {
        let now = self.clock.now();
        {
            let mut mem = self.mem();
            if let Some(o) = mem.owners.get_mut(&owner) {
                o.lease_expires_at = o.lease_expires_at.min(now);
            }
            mem.clean_up_owners(now);
        }
        self.wake();
        Ok(())
    }

    async fn load(
        &self,
        owner: OwnerId,
        request: LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let now = self.clock.now();
        let mut mem = self.mem();
        if let Some(version) = request.held_version {
            let LoadTarget::Id { instance, .. } = request.target else {
                return Err(StoreError::invalid("a lock-bound load must be by id"));
            };
            mem.check_held(owner, instance, version, now)?;
            return mem.snapshot(instance, true);
        }
        mem.check_caller(owner, now)?;
        match request.target {
            LoadTarget::Id {
                instance,
                accept_uninitialized,
            } => mem.load_by_id(owner, instance, accept_uninitialized, &request, now),
            LoadTarget::Key { .. } => mem.load_by_key(owner, &request, now),
        }
    }

    async fn save(
        &self,
        owner: OwnerId,
        request: SaveRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let now = self.clock.now();
        let (snapshot, runnable) = {
            let mut mem = self.mem();
            if request.held_version.is_none() {
                mem.check_caller(owner, now)?;
            }
            mem.save(owner, &request, now)?
        };
        if runnable {
            self.wake();
        }
        Ok(snapshot)
    }

    async fn unlock(&self, owner: OwnerId, instance: InstanceId) -> Result<(), StoreError> {
        let now = self.clock.now();
        let runnable = {
            let mut mem = self.mem();
            let holds = mem
                .instances
                .get(&instance)
                .is_some_and(|r| r.lock_owner == Some(owner));
            holds && mem.release(instance, now)
        };
        if runnable {
            self.wake();
        }
        Ok(())
    }

    async fn try_load_runnable(
        &self,
        owner: OwnerId,
        request: RunnableRequest,
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        let now = self.clock.now();
        let mut mem = self.mem();
        mem.check_caller(owner, now)?;
        let mut candidates: Vec<(Timestamp, InstanceId)> = mem
            .instances
            .iter()
            .filter(|(id, r)| {
                r.host_type.as_deref() == Some(request.host_type.as_str())
                    && r.lock_owner != Some(owner)
                    && !request.skip.contains(id)
            })
            .filter_map(|(id, r)| {
                mem.runnable_since(r)
                    .filter(|t| *t <= now)
                    .map(|t| (t, *id))
            })
            .collect();
        candidates.sort();
        for (_, id) in candidates {
            if mem.check_guards(id, request.guards).is_err() {
                continue;
            }
            if let Err(e) = mem.snapshot(id, true) {
                // One bad row never blocks the others: take it out of the runnable set.
                tracing::warn!(instance = %id, error = %e, "runnable instance cannot be loaded; removing it from the runnable set");
                if let Some(row) = mem.instances.get_mut(&id) {
                    row.ready_at = None;
                    row.lock_owner = None;
                    row.locked_since = None;
                }
                continue;
            }
            mem.acquire(owner, id, now);
            return mem.snapshot(id, true).map(Some);
        }
        Ok(None)
    }

    async fn next_runnable(&self, host_type: &str) -> Result<Option<Timestamp>, StoreError> {
        let mem = self.mem();
        Ok(mem
            .instances
            .values()
            .filter(|r| r.host_type.as_deref() == Some(host_type))
            .filter_map(|r| mem.runnable_since(r))
            .min())
    }

    async fn activatable(&self) -> Result<Vec<Activatable>, StoreError> {
        let now = self.clock.now();
        let mem = self.mem();
        let live: HashSet<&str> = mem
            .owners
            .values()
            .filter(|o| o.lease_expires_at > now)
            .filter_map(|o| o.host_type.as_deref())
            .collect();
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for row in mem.instances.values() {
            let Some(ht) = row.host_type.as_deref() else {
                continue;
            };
            if !live.contains(ht) && mem.runnable_since(row).is_some_and(|t| t <= now) {
                *counts.entry(ht.to_owned()).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(host_type, runnable_count)| Activatable {
                host_type,
                runnable_count,
            })
            .collect())
    }

    async fn owners(&self) -> Result<Vec<OwnerInfo>, StoreError> {
        let mut owners: Vec<OwnerInfo> = self.mem().owners.values().cloned().collect();
        owners.sort_by_key(|o| (o.created_at, o.id));
        Ok(owners)
    }
}
