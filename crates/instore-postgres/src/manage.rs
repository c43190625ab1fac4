//! The read side ([`QueryProvider`]) and the control queue ([`ControlProvider`]) of the
//! PostgreSQL provider (SPEC §10, §12; decision 0007).
//!
//! Control commands are server-side functions (`migrations/0002_query_control.sql`), one call
//! each. Queries are built here from the filter, with every value a bound parameter; a page and
//! everything shown with it (keys, promoted values, queued command, error-log entry, owner) come
//! in one statement. The rules that turn stored fields into what operators see are the core's
//! ([`InstanceInfo::finish`]); the SQL only mirrors [`Condition::of`] (the generated `condition`
//! column) and the filter's semantics.

use std::collections::{BTreeMap, BTreeSet};

use instore::encoding::decode;
use instore::{
    handover_metadata, CommandFailure, Condition, ControlCommand, ControlProvider, Cursor,
    Encoding, ErrorLogEntry, ExceptionInfo, ExecutionStatus, GroupBy, GroupCount, InstanceFilter,
    InstanceId, InstanceInfo, InstanceState, InstanceStatus, KeyId, KeyState, OwnerId, OwnerInfo,
    Page, PageRequest, PendingCommand, QueryProvider, QueueEntry, QueueSettings, QueuedCommand,
    RunnableBacklog, StorageError, StoreError, Suspension, Timestamp, Uuid,
};
use serde_json::Value as Json;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use crate::{codec, micros, Param, PgProvider};

fn corrupt(what: String) -> StoreError {
    StoreError::Storage(StorageError::corrupt(what))
}

/// Reads column `i`, a damaged or unexpected value being a corrupt row.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| corrupt(format!("query column {i} does not read: {e}")))
}

fn count_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn attempts_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The instant a statement judges by: the pinned test clock's (`$1`), else the server's at the
/// start of the statement.
const NOW: &str = "coalesce($1::int8, (extract(epoch from statement_timestamp()) * 1000000)::int8)";

/// The machine an instance is on ([`InstanceInfo::machine`]): the live lock owner's, else the
/// last writer's. Needs `o`, the lock owner joined.
fn machine_sql() -> String {
    format!("coalesce(case when o.lease_expires_at > {NOW} then o.machine end, i.updated_by)")
}

/// A statement under construction: its text and its bound parameters (`$1` is always the
/// pinned instant, or null).
struct Sql {
    params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
}

impl Sql {
    fn new(now: Option<i64>) -> Self {
        Self {
            params: vec![(Box::new(now), Type::INT8)],
        }
    }

    /// Binds `value`; returns its placeholder.
    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T, ty: Type) -> String {
        self.params.push((Box::new(value), ty));
        format!("${}", self.params.len())
    }

    fn params(&self) -> Vec<Param<'_>> {
        self.params
            .iter()
            .map(|(v, t)| (v.as_ref() as &(dyn ToSql + Sync), t.clone()))
            .collect()
    }
}

/// The condition codes a filter allows (its statuses and conditions combined), or `None` when it
/// allows every condition.
fn allowed_conditions(filter: &InstanceFilter) -> Option<Vec<i16>> {
    let allowed: BTreeSet<Condition> = Condition::ALL
        .into_iter()
        .filter(|c| filter.status.is_empty() || filter.status.contains(&c.status()))
        .filter(|c| filter.condition.is_empty() || filter.condition.contains(c))
        .collect();
    (allowed.len() < Condition::ALL.len())
        .then(|| allowed.into_iter().map(Condition::code).collect())
}

/// The `where` conditions of `filter` over `i` (instances) and `o` (the lock owner), with their
/// values bound to `sql`; `s` is the quoted schema.
fn filter_sql(sql: &mut Sql, filter: &InstanceFilter, s: &str) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(codes) = allowed_conditions(filter) {
        if let [one] = codes[..] {
            w.push(format!("i.condition = {}", sql.bind(one, Type::INT2)));
        } else {
            w.push(format!(
                "i.condition = any({})",
                sql.bind(codes, Type::INT2_ARRAY)
            ));
        }
    }
    if let Some(t) = filter.created_after {
        w.push(format!(
            "i.created_at >= {}",
            sql.bind(t.as_micros(), Type::INT8)
        ));
    }
    if let Some(t) = filter.created_before {
        w.push(format!(
            "i.created_at < {}",
            sql.bind(t.as_micros(), Type::INT8)
        ));
    }
    if let Some(t) = filter.modified_after {
        w.push(format!(
            "i.updated_at >= {}",
            sql.bind(t.as_micros(), Type::INT8)
        ));
    }
    if let Some(t) = filter.modified_before {
        w.push(format!(
            "i.updated_at < {}",
            sql.bind(t.as_micros(), Type::INT8)
        ));
    }
    if let Some(name) = &filter.exception {
        w.push(format!(
            "i.suspended and i.exception_name = {}",
            sql.bind(name.clone(), Type::TEXT)
        ));
    }
    if let Some(machine) = &filter.machine {
        // Spelled so the planner sees the plain column for the unlocked majority (and
        // estimates it from its statistics).
        let m = sql.bind(machine.clone(), Type::TEXT);
        w.push(format!(
            "((i.lock_owner is null and i.updated_by = {m}) \
              or (i.lock_owner is not null and {} = {m}))",
            machine_sql()
        ));
    }
    if let Some(host_type) = &filter.host_type {
        w.push(format!(
            "i.host_type = {}",
            sql.bind(host_type.clone(), Type::TEXT)
        ));
    }
    if let Some(owner) = filter.owner {
        w.push(format!(
            "i.lock_owner = {}",
            sql.bind(owner.as_uuid(), Type::UUID)
        ));
    }
    if !filter.ids.is_empty() {
        let ids: Vec<uuid::Uuid> = filter.ids.iter().map(InstanceId::as_uuid).collect();
        w.push(format!("i.id = any({})", sql.bind(ids, Type::UUID_ARRAY)));
    }
    if let Some(key) = filter.key {
        w.push(format!(
            "i.id in (select k.instance from {s}.keys k where k.id = {})",
            sql.bind(key.as_uuid(), Type::UUID)
        ));
    }
    for (name, text) in &filter.promoted {
        let name = sql.bind(name.clone(), Type::TEXT);
        let text = sql.bind(text.clone(), Type::TEXT);
        w.push(format!(
            "i.id in (select p.instance from {s}.promoted p \
             where p.name = {name} and p.text_value = {text})"
        ));
    }
    if let Some(has) = filter.has_pending_command {
        w.push(format!(
            "{}exists (select 1 from {s}.control_queue q where q.instance = i.id)",
            if has { "" } else { "not " }
        ));
    }
    if let Some(has) = filter.has_error {
        w.push(format!(
            "{}exists (select 1 from {s}.error_log e where e.instance = i.id)",
            if has { "" } else { "not " }
        ));
    }
    w
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    }
}

fn command_of(code: i16, reason: Option<String>) -> Result<ControlCommand, StoreError> {
    ControlCommand::from_code(code.into(), reason)
}

fn condition_of(code: i16) -> Result<Condition, StoreError> {
    Condition::ALL
        .into_iter()
        .find(|c| c.code() == code)
        .ok_or_else(|| corrupt(format!("unknown condition code {code}")))
}

/// The page query's columns, in the order [`info_of`] reads them.
const INFO_COLUMNS: &str = "i.id, i.state, i.status, i.created_at, i.updated_at, i.updated_by, \
    i.suspended, i.suspension_reason, i.exception_name, i.exception_message, i.bookmarks, \
    i.timer, i.host_type, d.metadata, i.lock_owner, i.owner_machine, i.owner_lease, \
    i.locked_since, i.lock_version, \
    q.command, q.reason, q.attempts, q.enqueued_at, \
    case when q.lock_id is not null then q.locked_until end, \
    e.command, e.reason, e.code, e.message, e.last_attempt_at, e.machine, e.attempts, \
    pr.names, pr.vals, ks.ids, ks.states, i.host_alive, i.now, q.last_error";

/// An instance from a row of the page query, finished at the row's instant.
fn info_of(row: &Row) -> Result<InstanceInfo, StoreError> {
    let id = InstanceId::from_uuid(col(row, 0)?);
    let suspended: bool = col(row, 6)?;
    let suspension = if suspended {
        let name: Option<String> = col(row, 8)?;
        let message: Option<String> = col(row, 9)?;
        Some(Suspension {
            reason: col::<Option<String>>(row, 7)?.unwrap_or_default(),
            exception: name.map(|name| ExceptionInfo {
                name,
                message: message.unwrap_or_default(),
            }),
        })
    } else {
        None
    };
    let metadata: Json = col(row, 13)?;
    let (metadata, _) = codec::metadata_of(&metadata)?;
    let lock_version: i64 = col(row, 18)?;
    let pending_command = match col::<Option<i16>>(row, 19)? {
        Some(code) => Some(PendingCommand {
            command: command_of(code, col(row, 20)?)?,
            attempts: attempts_of(col(row, 21)?),
            enqueued_at: Timestamp::from_micros(col(row, 22)?),
            locked_until: col::<Option<i64>>(row, 23)?.map(Timestamp::from_micros),
            last_error: col(row, 37)?,
        }),
        None => None,
    };
    let error = match col::<Option<i16>>(row, 24)? {
        Some(code) => Some(ErrorLogEntry {
            instance: id,
            command: command_of(code, col(row, 25)?)?,
            code: col(row, 26)?,
            message: col(row, 27)?,
            last_attempt_at: Timestamp::from_micros(col(row, 28)?),
            machine: col(row, 29)?,
            attempts: attempts_of(col(row, 30)?),
        }),
        None => None,
    };
    let mut promoted = BTreeMap::new();
    let names: Option<Vec<String>> = col(row, 31)?;
    let values: Option<Vec<&[u8]>> = col(row, 32)?;
    for (name, value) in names
        .unwrap_or_default()
        .into_iter()
        .zip(values.unwrap_or_default())
    {
        let v = codec::promoted_value(&name, value)?;
        promoted.insert(name, v);
    }
    let mut keys = BTreeMap::new();
    let key_ids: Option<Vec<uuid::Uuid>> = col(row, 33)?;
    let key_states: Option<Vec<i16>> = col(row, 34)?;
    for (k, s) in key_ids
        .unwrap_or_default()
        .into_iter()
        .zip(key_states.unwrap_or_default())
    {
        keys.insert(KeyId::from_uuid(k), KeyState::from_code(s.into())?);
    }
    let host_alive: bool = col(row, 35)?;
    let now = Timestamp::from_micros(col(row, 36)?);
    let info = InstanceInfo {
        id,
        status: InstanceStatus::Running,
        condition: Condition::Idle,
        state: InstanceState::from_code(col::<i16>(row, 1)?.into())?,
        execution_status: ExecutionStatus::from_code(col::<i16>(row, 2)?.into())?,
        created_at: Timestamp::from_micros(col(row, 3)?),
        updated_at: Timestamp::from_micros(col(row, 4)?),
        updated_by: col(row, 5)?,
        suspension,
        bookmarks: col(row, 10)?,
        timer: col::<Option<i64>>(row, 11)?.map(Timestamp::from_micros),
        host_type: col(row, 12)?,
        metadata,
        owner: col::<Option<uuid::Uuid>>(row, 14)?.map(OwnerId::from_uuid),
        owner_machine: col(row, 15)?,
        owner_lease_expires_at: col::<Option<i64>>(row, 16)?.map(Timestamp::from_micros),
        locked_since: col::<Option<i64>>(row, 17)?.map(Timestamp::from_micros),
        lock_version: u64::try_from(lock_version)
            .map_err(|_| corrupt(format!("negative lock version {lock_version}")))?,
        pending_command,
        error,
        promoted,
        keys,
        machine: None,
        blocked_on: None,
    };
    Ok(info.finish(now, host_alive))
}

impl PgProvider {
    fn s(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    async fn rows_of(&self, sql: &Sql, text: &str) -> Result<Vec<Row>, StoreError> {
        self.rows(text, &sql.params()).await
    }

    /// How many instances there are per condition, host type and machine, from the maintained
    /// totals (no instance rows counted but those a live owner on another machine holds), narrowed
    /// by `filter`'s statuses, conditions, host type and machine.
    /// `by_machine`: whether the machine is needed (else it is `None`, and no row is read).
    async fn totals(
        &self,
        filter: &InstanceFilter,
        by_machine: bool,
    ) -> Result<Vec<Total>, StoreError> {
        let text = format!(
            "select condition, host_type, machine, n from {}.instance_totals($1, $2, $3)",
            self.s()
        );
        let now = self.now();
        let by_machine = by_machine || filter.machine.is_some();
        let rows = self
            .rows(
                &text,
                &[
                    (&FOLD_AFTER, Type::INT4),
                    (&now, Type::INT8),
                    (&by_machine, Type::BOOL),
                ],
            )
            .await?;
        self.vacuum_count_deltas();
        let mut totals = Vec::new();
        for row in &rows {
            let total = Total {
                condition: condition_of(col(row, 0)?)?,
                host_type: col(row, 1)?,
                machine: col(row, 2)?,
                n: count_of(col(row, 3)?),
            };
            if total.admitted_by(filter) {
                totals.push(total);
            }
        }
        Ok(totals)
    }
}

impl PgProvider {
    /// Vacuums the count deltas in the background, at most once per [`DELTAS_VACUUM_EVERY`]:
    /// folding deletes them, and until a vacuum every count reads the dead rows again (a million
    /// saves leave a million; on a server with autovacuum off, or behind on this small table,
    /// counts at 1M instances took 80 ms instead of under one). A vacuum of the folded table
    /// reads only the pages with dead rows. Failures only delay the next try.
    fn vacuum_count_deltas(&self) {
        {
            let mut last = self
                .deltas_vacuumed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < DELTAS_VACUUM_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let pool = self.pool.clone();
        let text = format!("vacuum (skip_locked) {}.instance_count_deltas", self.s());
        tokio::spawn(async move {
            let vacuumed = match pool.get().await {
                Ok(object) => {
                    // A connection of its own, out of the pool, so its lock timeout never
                    // reaches the store's statements. The vacuum gives way at once to anything
                    // holding or waiting for locks on the store's tables (a `drop schema`,
                    // a migration): it is only an optimisation, and retried a minute later.
                    let client = deadpool_postgres::Object::take(object);
                    match client.batch_execute("set lock_timeout = '50ms'").await {
                        Ok(()) => client.batch_execute(&text).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = vacuumed {
                tracing::debug!(error = %e, "vacuuming the count deltas failed");
            }
        });
    }
}

/// How often a provider vacuums the count deltas it folds (see `vacuum_count_deltas`).
const DELTAS_VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How many instances share a condition, host type and machine.
struct Total {
    condition: Condition,
    host_type: Option<String>,
    machine: Option<String>,
    n: u64,
}

impl Total {
    /// Whether `filter`'s statuses, conditions, host type and machine let these through.
    fn admitted_by(&self, filter: &InstanceFilter) -> bool {
        (filter.status.is_empty() || filter.status.contains(&self.condition.status()))
            && (filter.condition.is_empty() || filter.condition.contains(&self.condition))
            && filter
                .host_type
                .as_ref()
                .map_or(true, |h| self.host_type.as_ref() == Some(h))
            && filter
                .machine
                .as_ref()
                .map_or(true, |m| self.machine.as_ref() == Some(m))
    }
}

/// Pending count deltas past which a reader folds them into the totals.
const FOLD_AFTER: i32 = 1_000;

/// Whether `filter` narrows by status, condition, host type and machine alone: then counts come
/// from the maintained totals.
fn by_totals(filter: &InstanceFilter) -> bool {
    InstanceFilter {
        status: Vec::new(),
        condition: Vec::new(),
        host_type: None,
        machine: None,
        ..filter.clone()
    }
    .is_empty()
}

/// The runnable backlog per host type at `$1`: how many instances are runnable (SPEC §8) and
/// since when the oldest is, in one plain statement (no server-side function).
///
/// Reads only runnable candidates. Ready instances: the host types of `instances_ready` are
/// found by skipping through that index (a loose index scan: one `min(host_type) ... >
/// previous` probe per host type), then each host type's due entries are one range of it
/// (`host_type = t and ready_at <= now`), counted by an index-only scan — instances waiting for
/// a future timer are never read. No state or suspension check is needed there (unlike the
/// dead-holder rows): only a release sets `ready_at`, and only on an initialized, unsuspended
/// instance; both change only under a lock, and taking a lock clears `ready_at`. Dead holders:
/// the owners whose lease ended, then their instances through `instances_locked` (one lateral
/// probe per dead owner); the store never deletes an owner that still holds a lock, so no lock
/// points at a missing owner.
///
/// `$1` is always bound to the provider's clock (the server's, shifted by the skew measured at
/// open), never left to the server: with a concrete instant the planner estimates the due range
/// from its statistics; reading `statement_timestamp()` it must guess a third of the ready index
/// is due, which at a million instances prices the statement past `jit_above_cost` and adds
/// about a second of JIT compilation to every scrape.
fn runnable_backlog_sql(s: &str) -> String {
    format!(
        "with recursive types(host_type) as ( \
             select min(host_type) from {s}.instances \
               where lock_owner is null and ready_at is not null \
             union all \
             select (select min(i.host_type) from {s}.instances i \
                     where i.lock_owner is null and i.ready_at is not null \
                       and i.host_type > t.host_type) \
             from types t where t.host_type is not null \
         ), \
         runnable(host_type, n, since) as ( \
             select t.host_type, r.n, r.since from types t cross join lateral ( \
               select count(*) as n, min(i.ready_at) as since from {s}.instances i \
               where i.host_type = t.host_type and i.lock_owner is null \
                 and i.ready_at is not null and i.ready_at <= {NOW}) r \
             union all \
             select null, count(*), min(i.ready_at) from {s}.instances i \
               where i.host_type is null and i.lock_owner is null and i.ready_at is not null \
                 and i.ready_at <= {NOW} \
             union all \
             select r.host_type, r.n, o.lease_expires_at from {s}.owners o cross join lateral ( \
               select i.host_type, count(*) as n from {s}.instances i \
               where i.lock_owner = o.id and i.state = 2 and not i.suspended \
               group by i.host_type) r \
             where o.lease_expires_at <= {NOW} \
         ) \
         select host_type, sum(n)::int8, min(since) from runnable where n > 0 \
         group by host_type order by host_type nulls first"
    )
}

#[async_trait::async_trait]
impl QueryProvider for PgProvider {
    async fn query(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError> {
        filter.validate()?;
        page.validate()?;
        let s = self.s();
        let mut sql = Sql::new(self.now());
        let mut conditions = filter_sql(&mut sql, filter, &s);
        if let Some(Cursor { created_at, id }) = page.cursor {
            let at = sql.bind(created_at.as_micros(), Type::INT8);
            let id = sql.bind(id.as_uuid(), Type::UUID);
            conditions.push(format!("(i.created_at, i.id) < ({at}, {id})"));
        }
        // One more than asked: whether there is a next page. The page is chosen first, then
        // everything shown with it is looked up by id for its rows alone (the `limit 1` keeps
        // the planner from turning those lookups into scans of whole tables).
        let limit = sql.bind(i64::try_from(page.max).unwrap_or(1) + 1, Type::INT8);
        let text = format!(
            "select {INFO_COLUMNS} from ( \
                 select i.*, o.machine as owner_machine, o.lease_expires_at as owner_lease, \
                        exists (select 1 from {s}.owners w where w.host_type = i.host_type \
                                and w.lease_expires_at > {NOW}) as host_alive, \
                        {NOW} as now \
                 from {s}.instances i left join {s}.owners o on o.id = i.lock_owner \
                 {} \
                 order by i.created_at desc, i.id desc \
                 limit {limit} \
             ) i \
             join {s}.instance_data d on d.id = i.id \
             left join lateral ( \
                 select * from {s}.control_queue q where q.instance = i.id limit 1) q on true \
             left join lateral ( \
                 select * from {s}.error_log e where e.instance = i.id limit 1) e on true \
             left join lateral ( \
                 select array_agg(p.name order by p.name) as names, \
                        array_agg(p.value order by p.name) as vals \
                 from {s}.promoted p where p.instance = i.id) pr on true \
             left join lateral ( \
                 select array_agg(k.id order by k.id) as ids, \
                        array_agg(k.state order by k.id) as states \
                 from {s}.keys k where k.instance = i.id) ks on true \
             order by i.created_at desc, i.id desc",
            where_clause(&conditions)
        );
        let rows = self.rows_of(&sql, &text).await?;
        let mut items = rows.iter().map(info_of).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > page.max {
            items.truncate(page.max);
            items.last().map(|last| Cursor {
                created_at: last.created_at,
                id: last.id,
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn count(&self, filter: &InstanceFilter) -> Result<u64, StoreError> {
        filter.validate()?;
        if by_totals(filter) {
            return Ok(self.totals(filter, false).await?.iter().map(|t| t.n).sum());
        }
        let s = self.s();
        let mut sql = Sql::new(self.now());
        let conditions = filter_sql(&mut sql, filter, &s);
        let text = format!(
            "select count(*) from {s}.instances i left join {s}.owners o on o.id = i.lock_owner {}",
            where_clause(&conditions)
        );
        let rows = self.rows_of(&sql, &text).await?;
        let row = rows
            .first()
            .ok_or_else(|| corrupt("count returned no row".into()))?;
        Ok(count_of(col(row, 0)?))
    }

    async fn group_count(
        &self,
        filter: &InstanceFilter,
        by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError> {
        filter.validate()?;
        let s = self.s();
        let mut groups: BTreeMap<Option<String>, u64> = BTreeMap::new();
        let mut sql = Sql::new(self.now());
        let conditions = filter_sql(&mut sql, filter, &s);
        let rows = match by {
            // From the totals: statuses summed over their conditions.
            GroupBy::Status | GroupBy::Condition | GroupBy::HostType | GroupBy::Machine
                if by_totals(filter) =>
            {
                for t in self.totals(filter, by == GroupBy::Machine).await? {
                    let key = match by {
                        GroupBy::Status => Some(t.condition.status().name().to_owned()),
                        GroupBy::Condition => Some(t.condition.name().to_owned()),
                        GroupBy::HostType => t.host_type,
                        _ => t.machine,
                    };
                    *groups.entry(key).or_default() += t.n;
                }
                Vec::new()
            }
            // Exception names from the small index of suspended instances; the rest (no
            // exception) is the total less those, in the same statement.
            GroupBy::Exception if by_totals(filter) && filter.machine.is_none() => {
                let mut named = conditions.clone();
                named.push("i.suspended and i.exception_name is not null".into());
                let mut total = Vec::new();
                if let Some(codes) = allowed_conditions(filter) {
                    total.push(format!(
                        "t.condition = any({})",
                        sql.bind(codes, Type::INT2_ARRAY)
                    ));
                }
                if let Some(h) = &filter.host_type {
                    total.push(format!("t.host_type = {}", sql.bind(h.clone(), Type::TEXT)));
                }
                let text = format!(
                    "with named as ( \
                         select i.exception_name as key, count(*) as n from {s}.instances i \
                         {} group by 1) \
                     select key, n from named \
                     union all \
                     select null, ((select coalesce(sum(t.n), 0) from {s}.instance_totals_now t \
                                    {}) - (select coalesce(sum(n), 0) from named))::int8",
                    where_clause(&named),
                    where_clause(&total)
                );
                self.rows_of(&sql, &text).await?
            }
            _ => {
                let key = match by {
                    GroupBy::Status | GroupBy::Condition => "i.condition".to_owned(),
                    GroupBy::HostType => "i.host_type".to_owned(),
                    GroupBy::Machine => machine_sql(),
                    GroupBy::Exception => {
                        "case when i.suspended then i.exception_name end".to_owned()
                    }
                };
                let text = format!(
                    "select {key}, count(*) from {s}.instances i \
                     left join {s}.owners o on o.id = i.lock_owner {} group by 1",
                    where_clause(&conditions)
                );
                self.rows_of(&sql, &text).await?
            }
        };
        for row in &rows {
            let n: i64 = col::<Option<i64>>(row, 1)?.unwrap_or(0);
            let key = match by {
                GroupBy::Status | GroupBy::Condition => {
                    let condition = condition_of(col(row, 0)?)?;
                    Some(if by == GroupBy::Status {
                        condition.status().name().to_owned()
                    } else {
                        condition.name().to_owned()
                    })
                }
                _ => col(row, 0)?,
            };
            *groups.entry(key).or_default() += count_of(n);
        }
        Ok(groups
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(key, count)| GroupCount { key, count })
            .collect())
    }

    async fn runnable_backlog(&self) -> Result<Vec<RunnableBacklog>, StoreError> {
        let sql = Sql::new(Some(self.clock.now().as_micros()));
        let rows = self.rows_of(&sql, &runnable_backlog_sql(&self.s())).await?;
        rows.iter()
            .map(|row| {
                Ok(RunnableBacklog {
                    host_type: col(row, 0)?,
                    count: count_of(col(row, 1)?),
                    oldest_since: Timestamp::from_micros(col(row, 2)?),
                })
            })
            .collect()
    }

    async fn purge_completed(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let text = format!("select {}.purge_completed($1, $2)", self.s());
        let row = self
            .one(
                &text,
                &[
                    (&before.as_micros(), Type::INT8),
                    (&to_i32(limit), Type::INT4),
                ],
            )
            .await?;
        Ok(count_of(col(&row, 0)?))
    }
}

#[async_trait::async_trait]
impl ControlProvider for PgProvider {
    async fn enqueue(
        &self,
        instance: InstanceId,
        command: ControlCommand,
    ) -> Result<(), StoreError> {
        if command == ControlCommand::Delete {
            return self.delete(instance).await;
        }
        let text = format!("select {}.enqueue($1, $2, $3, $4)", self.s());
        let now = self.now();
        let reason = command.reason().map(str::to_owned);
        self.rows(
            &text,
            &[
                (&now, Type::INT8),
                (&instance.as_uuid(), Type::UUID),
                (&command.code(), Type::INT2),
                (&reason, Type::TEXT),
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, instance: InstanceId) -> Result<(), StoreError> {
        let text = format!("select {}.delete_instance($1)", self.s());
        let row = self
            .one(&text, &[(&instance.as_uuid(), Type::UUID)])
            .await?;
        if col::<bool>(&row, 0)? {
            Ok(())
        } else {
            Err(StoreError::InstanceNotFound { instance })
        }
    }

    async fn read_batch(
        &self,
        settings: &QueueSettings,
        machine: &str,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        settings.validate()?;
        let text = format!(
            "select * from {}.read_batch($1, $2, $3, $4, $5, $6)",
            self.s()
        );
        let now = self.now();
        let machine = machine.to_owned();
        // As the give-up message shows it (the same words on every provider).
        let lock_time = format!("{:?}", settings.lock_time);
        let rows = self
            .rows(
                &text,
                &[
                    (&now, Type::INT8),
                    (&to_i32(settings.batch_size), Type::INT4),
                    (&micros(settings.lock_time), Type::INT8),
                    (
                        &i32::try_from(settings.max_attempts).unwrap_or(i32::MAX),
                        Type::INT4,
                    ),
                    (&machine, Type::TEXT),
                    (&lock_time, Type::TEXT),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let instance = InstanceId::from_uuid(col(row, 0)?);
                let metadata: Option<Json> = col(row, 7)?;
                let metadata = match metadata {
                    Some(m) => codec::metadata_of(&m)?.0,
                    None => Default::default(),
                };
                let holder = match col::<Option<uuid::Uuid>>(row, 9)? {
                    Some(owner) => {
                        let bytes: &[u8] = col(row, 11)?;
                        Some(OwnerInfo {
                            id: OwnerId::from_uuid(owner),
                            host_type: None,
                            metadata: decode(Encoding::from_code(col(row, 12)?)?, bytes)?,
                            machine: col(row, 10)?,
                            created_at: Timestamp::from_micros(0),
                            lease_expires_at: Timestamp::from_micros(0),
                        })
                    }
                    None => None,
                };
                let host_type: Option<String> = col(row, 8)?;
                Ok(QueuedCommand {
                    instance,
                    command: command_of(col(row, 1)?, col(row, 2)?)?,
                    attempts: attempts_of(col(row, 3)?),
                    enqueued_at: Timestamp::from_micros(col(row, 4)?),
                    lock: col(row, 5)?,
                    locked_until: Timestamp::from_micros(col(row, 6)?),
                    metadata: handover_metadata(&metadata, host_type.as_deref(), holder.as_ref()),
                })
            })
            .collect()
    }

    async fn complete(&self, instance: InstanceId, lock: Uuid) -> Result<(), StoreError> {
        let text = format!("select {}.complete_command($1, $2)", self.s());
        self.rows(
            &text,
            &[(&instance.as_uuid(), Type::UUID), (&lock, Type::UUID)],
        )
        .await?;
        Ok(())
    }

    async fn abandon(
        &self,
        instance: InstanceId,
        lock: Uuid,
        failure: CommandFailure,
        settings: &QueueSettings,
    ) -> Result<(), StoreError> {
        let text = format!(
            "select {}.abandon_command($1, $2, $3, $4, $5, $6, $7)",
            self.s()
        );
        let now = self.now();
        self.rows(
            &text,
            &[
                (&now, Type::INT8),
                (&instance.as_uuid(), Type::UUID),
                (&lock, Type::UUID),
                (&failure.code, Type::TEXT),
                (&failure.message, Type::TEXT),
                (&failure.machine, Type::TEXT),
                (
                    &i32::try_from(settings.max_attempts).unwrap_or(i32::MAX),
                    Type::INT4,
                ),
            ],
        )
        .await?;
        Ok(())
    }

    async fn queued(&self, after: Option<u64>, max: usize) -> Result<Vec<QueueEntry>, StoreError> {
        let text = format!(
            "select position, instance, command, reason, attempts, enqueued_at, \
                    case when lock_id is not null then locked_until end, last_error \
             from {}.control_queue where position > $1 order by position limit $2",
            self.s()
        );
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .rows(&text, &[(&after, Type::INT8), (&max, Type::INT8)])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueEntry {
                    position: count_of(col(row, 0)?),
                    instance: InstanceId::from_uuid(col(row, 1)?),
                    command: command_of(col(row, 2)?, col(row, 3)?)?,
                    attempts: attempts_of(col(row, 4)?),
                    enqueued_at: Timestamp::from_micros(col(row, 5)?),
                    locked_until: col::<Option<i64>>(row, 6)?.map(Timestamp::from_micros),
                    last_error: col(row, 7)?,
                })
            })
            .collect()
    }

    async fn error_log(&self, max: usize) -> Result<Vec<ErrorLogEntry>, StoreError> {
        let text = format!(
            "select instance, command, reason, code, message, last_attempt_at, machine, attempts \
             from {}.error_log order by last_attempt_at desc, instance desc limit $1",
            self.s()
        );
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self.rows(&text, &[(&max, Type::INT8)]).await?;
        rows.iter()
            .map(|row| {
                Ok(ErrorLogEntry {
                    instance: InstanceId::from_uuid(col(row, 0)?),
                    command: command_of(col(row, 1)?, col(row, 2)?)?,
                    code: col(row, 3)?,
                    message: col(row, 4)?,
                    last_attempt_at: Timestamp::from_micros(col(row, 5)?),
                    machine: col(row, 6)?,
                    attempts: attempts_of(col(row, 7)?),
                })
            })
            .collect()
    }
}
