//! The storage operations inside one transaction (a savepoint of the writer's batch): the same
//! check-then-apply logic as the memory provider (`instore/src/memory.rs`), over SQL rows. Each
//! function checks everything before it writes anything, so an error leaves nothing behind even
//! before the savepoint is rolled back.

use std::collections::HashMap;

use instore::encoding::{encode, encode_within, EncodedBag, EncodingSettings};
use instore::{
    apply_changes, CompletionAction, ExecutionStatus, InstanceId, InstanceSnapshot, InstanceState,
    KeyId, KeyState, KeyView, LoadGuards, LoadRequest, LoadTarget, NewKey, OwnerId, PropertyBag,
    SaveRequest, StoreError, SuspendChange, Suspension, Timestamp,
};
use rusqlite::Connection;

use crate::queries::{self as q, InstanceRow, KeyRow, OwnerBrief};

/// One operation's view of the database, at one instant.
pub(crate) struct Tx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) now: Timestamp,
}

impl Tx<'_> {
    fn alive(&self, owner: OwnerId) -> Result<bool, StoreError> {
        Ok(q::lease_of(self.conn, owner)?.is_some_and(|lease| lease > self.now))
    }

    pub(crate) fn check_caller(&self, owner: OwnerId) -> Result<(), StoreError> {
        if self.alive(owner)? {
            Ok(())
        } else {
            Err(StoreError::OwnerLost { owner })
        }
    }

    /// The row the caller holds at `version` (its data blob only if `with_data`), or `LockLost`.
    fn check_held(
        &self,
        owner: OwnerId,
        id: InstanceId,
        version: u64,
        with_data: bool,
    ) -> Result<InstanceRow, StoreError> {
        let row = if with_data {
            q::get_instance(self.conn, id)?
        } else {
            q::get_instance_without_data(self.conn, id)?
        };
        match row {
            Some(row)
                if row.lock_owner == Some(owner)
                    && row.lock_version == version
                    && self.alive(owner)? =>
            {
                Ok(row)
            }
            _ => Err(StoreError::LockLost { instance: id }),
        }
    }

    /// Whether `owner` may take the lock of `row` (SPEC §5), without changing anything.
    fn can_acquire(
        &self,
        owner: OwnerId,
        row: Option<&InstanceRow>,
        busy: &[InstanceId],
    ) -> Result<(), StoreError> {
        let Some(row) = row else { return Ok(()) };
        if row.state == InstanceState::Completed {
            return Err(StoreError::InstanceComplete { instance: row.id });
        }
        match row.lock_owner {
            Some(holder) if holder == owner && busy.contains(&row.id) => {
                Err(StoreError::HandleConflict { instance: row.id })
            }
            Some(holder) if holder != owner => match q::get_owner(self.conn, holder)? {
                Some(info) if info.lease_expires_at > self.now => Err(StoreError::InstanceLocked {
                    instance: row.id,
                    owner: holder,
                    owner_metadata: info.metadata,
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Takes the lock of `row` (after `can_acquire`), or of a new uninitialized instance.
    /// `brief` is the caller's owner row.
    fn acquire(
        &self,
        owner: OwnerId,
        brief: Option<&OwnerBrief>,
        id: InstanceId,
        row: Option<InstanceRow>,
    ) -> Result<InstanceRow, StoreError> {
        let host_type = brief.and_then(|o| o.host_type.clone());
        let mut row = row.unwrap_or_else(|| {
            let empty = encode(&PropertyBag::new(), &EncodingSettings::default());
            InstanceRow {
                id,
                state: InstanceState::Uninitialized,
                lock_owner: None,
                last_lock_owner: Some(owner),
                lock_version: 1,
                status: ExecutionStatus::Idle,
                timer: None,
                ready_at: None,
                suspension: None,
                host_type: None,
                bookmarks: Vec::new(),
                created_at: self.now,
                updated_at: self.now,
                updated_by: brief.map(|o| o.machine.clone()),
                locked_since: None,
                data: empty.clone(),
                metadata: empty,
            }
        });
        if row.last_lock_owner != Some(owner) {
            row.lock_version += 1;
        }
        if row.lock_owner != Some(owner) {
            row.locked_since = Some(self.now);
        }
        row.lock_owner = Some(owner);
        row.last_lock_owner = Some(owner);
        row.ready_at = None;
        if host_type.is_some() {
            row.host_type = host_type;
        }
        Ok(row)
    }

    /// Releases the lock of `row`; returns whether it is (or will be) runnable.
    fn release(&self, row: &mut InstanceRow) -> bool {
        row.lock_owner = None;
        row.locked_since = None;
        row.ready_at = if row.state != InstanceState::Initialized || row.suspension.is_some() {
            None
        } else if row.status == ExecutionStatus::Executing {
            Some(self.now)
        } else {
            row.timer
        };
        row.ready_at.is_some()
    }

    fn snapshot(&self, row: &InstanceRow, locked: bool) -> Result<InstanceSnapshot, StoreError> {
        self.snapshot_with(row, locked, None, None)
    }

    /// A snapshot, decoding only the bags not given (a save already has them in hand).
    fn snapshot_with(
        &self,
        row: &InstanceRow,
        locked: bool,
        data: Option<PropertyBag>,
        metadata: Option<PropertyBag>,
    ) -> Result<InstanceSnapshot, StoreError> {
        let keys = q::keys_of(self.conn, row.id)?
            .into_iter()
            .map(|(k, r)| {
                (
                    k,
                    KeyView {
                        state: r.state,
                        metadata: r.metadata,
                    },
                )
            })
            .collect();
        Ok(InstanceSnapshot {
            instance: row.id,
            state: row.state,
            lock_version: row.lock_version,
            locked,
            data: match data {
                Some(data) => data,
                None => q::decode_bag(&row.data)?,
            },
            metadata: match metadata {
                Some(metadata) => metadata,
                None => q::decode_bag(&row.metadata)?,
            },
            keys,
            status: row.status,
            timer: row.timer,
            bookmarks: row.bookmarks.clone(),
            suspension: row.suspension.clone(),
            host_type: row.host_type.clone(),
        })
    }

    fn check_guards(row: &InstanceRow, guards: LoadGuards) -> Result<(), StoreError> {
        match &row.suspension {
            Some(s) if guards.reject_suspended => Err(StoreError::InstanceSuspended {
                instance: row.id,
                reason: s.reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn check_new_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
        for k in keys {
            if let Some(row) = q::get_key(self.conn, k.key)? {
                return Err(StoreError::InstanceKeyCollision {
                    key: k.key,
                    instance: row.instance,
                });
            }
        }
        Ok(())
    }

    fn associate(&self, id: InstanceId, keys: &[NewKey]) -> Result<(), StoreError> {
        for k in keys {
            let row = KeyRow {
                instance: id,
                state: KeyState::Associated,
                metadata: k.metadata.clone(),
            };
            q::put_key(self.conn, k.key, &row)?;
        }
        Ok(())
    }

    /// Takes the lock and writes the row, returning its snapshot.
    fn lock_and_load(
        &self,
        owner: OwnerId,
        id: InstanceId,
        row: Option<InstanceRow>,
    ) -> Result<InstanceRow, StoreError> {
        // Decode before taking the lock, so a damaged row changes nothing.
        if let Some(row) = &row {
            self.snapshot(row, true)?;
        }
        let brief = q::owner_brief(self.conn, owner)?;
        let row = self.acquire(owner, brief.as_ref(), id, row)?;
        q::put_instance(self.conn, &row)?;
        Ok(row)
    }

    pub(crate) fn load(
        &self,
        owner: OwnerId,
        request: &LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        if let Some(version) = request.held_version {
            let LoadTarget::Id { instance, .. } = request.target else {
                return Err(StoreError::invalid("a lock-bound load must be by id"));
            };
            let row = self.check_held(owner, instance, version, true)?;
            return self.snapshot(&row, true);
        }
        self.check_caller(owner)?;
        match &request.target {
            LoadTarget::Id {
                instance,
                accept_uninitialized,
            } => self.load_by_id(owner, *instance, *accept_uninitialized, request),
            LoadTarget::Key { .. } => self.load_by_key(owner, request),
        }
    }

    fn load_by_id(
        &self,
        owner: OwnerId,
        id: InstanceId,
        accept_uninitialized: bool,
        request: &LoadRequest,
    ) -> Result<InstanceSnapshot, StoreError> {
        let row = q::get_instance(self.conn, id)?;
        match &row {
            None if !accept_uninitialized => {
                return Err(StoreError::InstanceNotReady { instance: id })
            }
            None => {}
            Some(r) if r.state == InstanceState::Completed => {
                return Err(StoreError::InstanceComplete { instance: id })
            }
            Some(r) if r.state == InstanceState::Uninitialized && !accept_uninitialized => {
                return Err(StoreError::InstanceNotReady { instance: id })
            }
            Some(r) => Self::check_guards(r, request.guards)?,
        }
        self.can_acquire(owner, row.as_ref(), &request.busy)?;
        let row = self.lock_and_load(owner, id, row)?;
        self.snapshot(&row, true)
    }

    fn load_by_key(
        &self,
        owner: OwnerId,
        request: &LoadRequest,
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
        match q::get_key(self.conn, *key)? {
            Some(k) if k.state == KeyState::Completed => {
                Err(StoreError::InstanceKeyComplete { key: *key })
            }
            Some(k) => {
                let id = k.instance;
                let row = q::get_instance(self.conn, id)?;
                match &row {
                    None => return Err(StoreError::InstanceKeyNotReady { key: *key }),
                    Some(r) if r.state == InstanceState::Completed => {
                        return Err(StoreError::InstanceComplete { instance: id })
                    }
                    Some(r) if r.state == InstanceState::Uninitialized && !accept_uninitialized => {
                        return Err(StoreError::InstanceNotReady { instance: id })
                    }
                    Some(r) => Self::check_guards(r, request.guards)?,
                }
                self.can_acquire(owner, row.as_ref(), &request.busy)?;
                self.check_new_keys(keys_to_associate)?;
                let row = self.lock_and_load(owner, id, row)?;
                self.associate(id, keys_to_associate)?;
                self.snapshot(&row, true)
            }
            None if !accept_uninitialized => Err(StoreError::InstanceKeyNotReady { key: *key }),
            None => {
                let id = create_with_id.unwrap_or_default();
                let row = q::get_instance(self.conn, id)?;
                if let Some(r) = &row {
                    if r.state != InstanceState::Uninitialized {
                        return Err(StoreError::InstanceCollision { instance: id });
                    }
                    Self::check_guards(r, request.guards)?;
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
                self.can_acquire(owner, row.as_ref(), &request.busy)?;
                self.check_new_keys(&new_keys)?;
                let row = self.lock_and_load(owner, id, row)?;
                self.associate(id, &new_keys)?;
                self.snapshot(&row, true)
            }
        }
    }

    /// SPEC §6.4. Checks every effect, then applies them all. Returns the snapshot and whether
    /// the instance became runnable. `encoded` is the request's data already encoded (off this
    /// thread), used as is when nothing has to be dropped to fit the size limit.
    pub(crate) fn save(
        &self,
        owner: OwnerId,
        request: &SaveRequest,
        encoded: Option<EncodedBag>,
    ) -> Result<(InstanceSnapshot, bool), StoreError> {
        let id = request.instance;
        let save = &request.save;
        // A save that brings data never needs the old blob.
        let old_data_needed = save.data.is_none();
        let existing = match request.held_version {
            Some(v) => Some(self.check_held(owner, id, v, old_data_needed)?),
            None => {
                self.check_caller(owner)?;
                let row = if old_data_needed {
                    q::get_instance(self.conn, id)?
                } else {
                    q::get_instance_without_data(self.conn, id)?
                };
                self.can_acquire(owner, row.as_ref(), &request.busy)?;
                row
            }
        };
        // What the save must read has to decode, before anything changes: the metadata it
        // merges into (below), and the data it keeps if it brings none.
        let kept_data = match (&save.data, &existing) {
            (None, Some(row)) => Some(q::decode_bag(&row.data)?),
            _ => None,
        };

        // Keys, in order: associate, complete, free — simulated on an overlay first.
        let mut overlay: HashMap<KeyId, Option<KeyState>> = HashMap::new();
        let current = |overlay: &HashMap<KeyId, Option<KeyState>>,
                       k: KeyId|
         -> Result<Option<(InstanceId, KeyState)>, StoreError> {
            Ok(match overlay.get(&k) {
                Some(state) => state.map(|s| (id, s)),
                None => q::get_key(self.conn, k)?.map(|r| (r.instance, r.state)),
            })
        };
        for k in &save.keys_to_associate {
            if let Some((other, _)) = current(&overlay, k.key)? {
                return Err(StoreError::InstanceKeyCollision {
                    key: k.key,
                    instance: other,
                });
            }
            overlay.insert(k.key, Some(KeyState::Associated));
        }
        for k in &save.keys_to_complete {
            match current(&overlay, *k)? {
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
            match current(&overlay, *k)? {
                Some((i, KeyState::Completed)) if i == id => {
                    overlay.insert(*k, None);
                }
                _ => return Err(StoreError::InstanceKeyNotReady { key: *k }),
            }
        }

        // Data and metadata, within the size limit.
        let rules = &request.rules;
        let mut metadata = match &existing {
            Some(row) => q::decode_bag(&row.metadata)?,
            None => PropertyBag::new(),
        };
        apply_changes(&mut metadata, &save.metadata_changes);
        let merged = metadata;
        // `whole`: the bags stored are exactly the bags in hand (no optional value dropped).
        let (data, metadata, whole) = match &save.data {
            Some(data) => {
                let m = encode(&merged, &rules.encoding);
                match encoded {
                    Some(d) if d.logical_len + m.logical_len <= rules.max_payload_bytes => {
                        (Some(d), m, true)
                    }
                    _ => {
                        let (d, m) =
                            encode_within(data, &merged, rules.max_payload_bytes, &rules.encoding)?;
                        (Some(d), m, false)
                    }
                }
            }
            None => {
                let data_len = existing.as_ref().map_or(0, |r| r.data.logical_len);
                let limit = rules.max_payload_bytes.saturating_sub(data_len);
                let (_, m) = encode_within(&PropertyBag::new(), &merged, limit, &rules.encoding)
                    .map_err(|e| match e {
                        StoreError::PayloadTooLarge { size, .. } => StoreError::PayloadTooLarge {
                            size: size + data_len,
                            limit: rules.max_payload_bytes,
                        },
                        other => other,
                    })?;
                (None, m, false)
            }
        };

        // Everything checked: apply.
        let brief = q::owner_brief(self.conn, owner)?;
        let mut row = match request.held_version {
            Some(_) => existing.ok_or(StoreError::LockLost { instance: id })?,
            None => self.acquire(owner, brief.as_ref(), id, existing)?,
        };
        for (key, state) in &overlay {
            match state {
                Some(state) => {
                    let metadata = match q::get_key(self.conn, *key)? {
                        Some(existing) => existing.metadata,
                        None => save
                            .keys_to_associate
                            .iter()
                            .find(|k| k.key == *key)
                            .map(|k| k.metadata.clone())
                            .unwrap_or_default(),
                    };
                    q::put_key(
                        self.conn,
                        *key,
                        &KeyRow {
                            instance: id,
                            state: *state,
                            metadata,
                        },
                    )?;
                }
                None => q::delete_key(self.conn, *key)?,
            }
        }
        row.metadata = metadata;
        row.updated_at = self.now;
        row.updated_by = brief.map(|o| o.machine);
        if let Some(promoted) = &request.promoted {
            q::replace_promoted(self.conn, id, promoted)?;
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
        if save.complete {
            row.state = InstanceState::Completed;
            row.timer = None;
            q::complete_keys_of(self.conn, id)?;
        }
        let runnable = save.unlock && self.release(&mut row);
        q::put_instance(self.conn, &row)?;
        // The bags in hand are what was stored, unless optional values had to be dropped.
        let data_in_hand = if whole { save.data.clone() } else { None }.or(kept_data);
        let metadata_in_hand = whole.then_some(merged);
        let snapshot = self.snapshot_with(&row, !save.unlock, data_in_hand, metadata_in_hand)?;
        if save.complete && rules.completion == CompletionAction::DeleteAll {
            q::remove_instance(self.conn, id)?;
        }
        Ok((snapshot, runnable))
    }

    /// Releases the caller's lock if it still holds it; returns whether it became runnable.
    pub(crate) fn unlock(&self, owner: OwnerId, id: InstanceId) -> Result<bool, StoreError> {
        match q::get_instance(self.conn, id)? {
            Some(mut row) if row.lock_owner == Some(owner) => {
                let runnable = self.release(&mut row);
                q::put_instance(self.conn, &row)?;
                Ok(runnable)
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn try_load_runnable(
        &self,
        owner: OwnerId,
        host_type: &str,
        guards: LoadGuards,
        skip: &[InstanceId],
    ) -> Result<Option<InstanceSnapshot>, StoreError> {
        self.check_caller(owner)?;
        loop {
            let limit = skip.len() + 32;
            let candidates = q::runnable_candidates(self.conn, host_type, self.now, limit)?;
            let mut removed_any = false;
            for (_, id) in &candidates {
                if skip.contains(id) {
                    continue;
                }
                let Some(row) = q::get_instance(self.conn, *id)? else {
                    continue;
                };
                if row.lock_owner == Some(owner) || Self::check_guards(&row, guards).is_err() {
                    continue;
                }
                if let Err(e) = self.snapshot(&row, true) {
                    // One bad row never blocks the others: take it out of the runnable set.
                    tracing::warn!(instance = %id, error = %e, "runnable instance cannot be loaded; removing it from the runnable set");
                    let mut row = row;
                    row.ready_at = None;
                    row.lock_owner = None;
                    row.locked_since = None;
                    q::put_instance(self.conn, &row)?;
                    removed_any = true;
                    continue;
                }
                let brief = q::owner_brief(self.conn, owner)?;
                let row = self.acquire(owner, brief.as_ref(), *id, Some(row))?;
                q::put_instance(self.conn, &row)?;
                return self.snapshot(&row, true).map(Some);
            }
            // Only look again if bad rows were removed and there may be more behind them.
            if !removed_any || candidates.len() < limit {
                return Ok(None);
            }
        }
    }
}
