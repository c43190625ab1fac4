//! The memory provider's read side (SPEC §12, decision 0007): every query scans the rows under
//! the one mutex, so each answer is one consistent snapshot.

use std::collections::{BTreeMap, HashSet};

use super::{Mem, MemoryProvider, Row};
use crate::encoding::decode;
use crate::{
    promoted_text, Condition, Cursor, GroupBy, GroupCount, InstanceFilter, InstanceId,
    InstanceInfo, InstanceState, InstanceStatus, Page, PageRequest, PendingCommand, QueryProvider,
    RunnableBacklog, StoreError, Timestamp,
};

impl Mem {
    /// Host types with an owner whose lease is alive at `now`.
    fn live_host_types(&self, now: Timestamp) -> HashSet<&str> {
        self.owners
            .values()
            .filter(|o| o.lease_expires_at > now)
            .filter_map(|o| o.host_type.as_deref())
            .collect()
    }

    /// The derived machine of a row: its live lock holder's, else its last writer's.
    fn machine_of(&self, row: &Row, now: Timestamp) -> Option<String> {
        let live_holder = row
            .lock_owner
            .and_then(|o| self.owners.get(&o))
            .filter(|o| o.lease_expires_at > now);
        match live_holder {
            Some(o) => Some(o.machine.clone()),
            None => row.updated_by.clone(),
        }
    }

    /// Whether `row` (instance `id`) passes every field of `filter` at `now`.
    fn matches(&self, id: InstanceId, row: &Row, filter: &InstanceFilter, now: Timestamp) -> bool {
        let in_range = |t: Timestamp, after: Option<Timestamp>, before: Option<Timestamp>| {
            after.map_or(true, |a| a <= t) && before.map_or(true, |b| t < b)
        };
        let status = InstanceStatus::of(row.state, row.suspension.is_some());
        let condition = Condition::of(row.state, row.status, row.suspension.as_ref());
        let exception = row
            .suspension
            .as_ref()
            .and_then(|s| s.exception.as_ref())
            .map(|e| e.name.as_str());
        (filter.status.is_empty() || filter.status.contains(&status))
            && (filter.condition.is_empty() || filter.condition.contains(&condition))
            && in_range(row.created_at, filter.created_after, filter.created_before)
            && in_range(
                row.updated_at,
                filter.modified_after,
                filter.modified_before,
            )
            && filter
                .exception
                .as_deref()
                .map_or(true, |e| exception == Some(e))
            && filter
                .machine
                .as_ref()
                .map_or(true, |m| self.machine_of(row, now).as_ref() == Some(m))
            && filter
                .host_type
                .as_ref()
                .map_or(true, |h| row.host_type.as_ref() == Some(h))
            && filter.owner.map_or(true, |o| row.lock_owner == Some(o))
            && (filter.ids.is_empty() || filter.ids.contains(&id))
            && filter.key.map_or(true, |k| row.keys.contains(&k))
            && filter.promoted.iter().all(|(name, text)| {
                row.promoted
                    .get(name)
                    .and_then(promoted_text)
                    .is_some_and(|t| &t == text)
            })
            && filter
                .has_pending_command
                .map_or(true, |has| self.queue.contains_key(&id) == has)
            && filter
                .has_error
                .map_or(true, |has| self.errors.contains_key(&id) == has)
    }

    /// The matching rows, newest first (creation time descending, then id descending).
    fn matching(&self, filter: &InstanceFilter, now: Timestamp) -> Vec<(InstanceId, &Row)> {
        let mut rows: Vec<(InstanceId, &Row)> = self
            .instances
            .iter()
            .filter(|(id, row)| self.matches(**id, row, filter, now))
            .map(|(id, row)| (*id, row))
            .collect();
        rows.sort_by_key(|(id, row)| std::cmp::Reverse((row.created_at, *id)));
        rows
    }

    /// The instance as queries show it, derived fields filled at `now`.
    fn info(
        &self,
        id: InstanceId,
        row: &Row,
        now: Timestamp,
        live: &HashSet<&str>,
    ) -> Result<InstanceInfo, StoreError> {
        let holder = row.lock_owner.and_then(|o| self.owners.get(&o));
        let info = InstanceInfo {
            id,
            // Derived fields: filled by `finish`.
            status: InstanceStatus::Running,
            condition: Condition::Idle,
            machine: None,
            blocked_on: None,
            state: row.state,
            execution_status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            updated_by: row.updated_by.clone(),
            suspension: row.suspension.clone(),
            bookmarks: row.bookmarks.clone(),
            timer: row.timer,
            host_type: row.host_type.clone(),
            metadata: decode(row.metadata.encoding, &row.metadata.bytes)?,
            owner: row.lock_owner,
            owner_machine: holder.map(|o| o.machine.clone()),
            owner_lease_expires_at: holder.map(|o| o.lease_expires_at),
            locked_since: row.locked_since,
            lock_version: row.lock_version,
            pending_command: self.queue.get(&id).map(|q| PendingCommand {
                command: q.command.clone(),
                attempts: q.attempts,
                enqueued_at: q.enqueued_at,
                locked_until: q.locked_until,
                last_error: q.last_error.clone(),
            }),
            error: self.errors.get(&id).cloned(),
            promoted: row.promoted.clone(),
            keys: row
                .keys
                .iter()
                .filter_map(|k| self.keys.get(k).map(|r| (*k, r.state)))
                .collect(),
        };
        let host_type_alive = row.host_type.as_deref().is_some_and(|h| live.contains(h));
        Ok(info.finish(now, host_type_alive))
    }

    /// The group an instance falls in.
    fn group_of(&self, row: &Row, by: GroupBy, now: Timestamp) -> Option<String> {
        match by {
            GroupBy::Status => Some(
                InstanceStatus::of(row.state, row.suspension.is_some())
                    .name()
                    .into(),
            ),
            GroupBy::Condition => Some(
                Condition::of(row.state, row.status, row.suspension.as_ref())
                    .name()
                    .into(),
            ),
            GroupBy::HostType => row.host_type.clone(),
            GroupBy::Machine => self.machine_of(row, now),
            GroupBy::Exception => row
                .suspension
                .as_ref()
                .and_then(|s| s.exception.as_ref())
                .map(|e| e.name.clone()),
        }
    }
}

#[async_trait::async_trait]
impl QueryProvider for MemoryProvider {
    async fn query(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError> {
        filter.validate()?;
        page.validate()?;
        let now = self.clock.now();
        let mem = self.mem();
        let live = mem.live_host_types(now);
        let after = |row: &Row, id: InstanceId| {
            page.cursor
                .map_or(true, |c| (row.created_at, id) < (c.created_at, c.id))
        };
        let mut rows = mem
            .matching(filter, now)
            .into_iter()
            .filter(|(id, row)| after(row, *id));
        let items = rows
            .by_ref()
            .take(page.max)
            .map(|(id, row)| mem.info(id, row, now, &live))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (rows.next(), items.last()) {
            (Some(_), Some(last)) => Some(Cursor {
                created_at: last.created_at,
                id: last.id,
            }),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn count(&self, filter: &InstanceFilter) -> Result<u64, StoreError> {
        filter.validate()?;
        let now = self.clock.now();
        let mem = self.mem();
        Ok(mem.matching(filter, now).len() as u64)
    }

    async fn group_count(
        &self,
        filter: &InstanceFilter,
        by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError> {
        filter.validate()?;
        let now = self.clock.now();
        let mem = self.mem();
        let mut groups: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for (_, row) in mem.matching(filter, now) {
            *groups.entry(mem.group_of(row, by, now)).or_default() += 1;
        }
        Ok(groups
            .into_iter()
            .map(|(key, count)| GroupCount { key, count })
            .collect())
    }

    async fn runnable_backlog(&self) -> Result<Vec<RunnableBacklog>, StoreError> {
        let now = self.clock.now();
        let mem = self.mem();
        // The runnable set as TryLoadRunnable sees it (`runnable_since`), of every host type.
        let mut backlog: BTreeMap<Option<String>, (u64, Timestamp)> = BTreeMap::new();
        for row in mem.instances.values() {
            let Some(since) = mem.runnable_since(row).filter(|t| *t <= now) else {
                continue;
            };
            let entry = backlog.entry(row.host_type.clone()).or_insert((0, since));
            entry.0 += 1;
            entry.1 = entry.1.min(since);
        }
        Ok(backlog
            .into_iter()
            .map(|(host_type, (count, oldest_since))| RunnableBacklog {
                host_type,
                count,
                oldest_since,
            })
            .collect())
    }

    async fn purge_completed(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut mem = self.mem();
        let mut old: Vec<(Timestamp, InstanceId)> = mem
            .instances
            .iter()
            .filter(|(_, row)| row.state == InstanceState::Completed && row.updated_at < before)
            .map(|(id, row)| (row.updated_at, *id))
            .collect();
        old.sort();
        old.truncate(limit);
        for (_, id) in &old {
            mem.remove_instance(*id);
        }
        Ok(old.len() as u64)
    }
}
