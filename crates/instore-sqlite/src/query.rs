//! The read side (SPEC §12, decision 0007) on SQLite: queries, counts and group counts on the
//! read pool (one read transaction each, so one consistent snapshot), purges through the writer.
//!
//! SQL is built from the [`InstanceFilter`] with numbered parameters only: no value is ever
//! written into the statement text. The plan each query gets at a million instances:
//!
//! - **Pages** are keyset pages in `(created_at, id)` descending order. A filter on the status or
//!   condition (the generated `condition` column), or on the host type, is answered by one
//!   index range per condition (`instances_condition` or `instances_host_type`), each reading
//!   at most one page from where the cursor points, merged by a `union all`; without them the
//!   page walks `instances_created` from the cursor. Either way a page reads about a page of
//!   index entries, whatever the table size (unless the other filters are very selective).
//! - A page's details (owner, keys, promoted values, queued command, error-log entry, live host
//!   types) take one statement each for the whole page.
//! - **Counts and group counts** whose filter names only statuses, conditions and a host type
//!   read `instance_counts`, a few rows kept by triggers (by machine: corrected by the instances
//!   a live owner holds, found through `instances_locked`); by exception, the named groups come
//!   from the partial index `instances_exception` and the rest is the count minus them. Any
//!   other filter counts over the index that fits it best.

use std::collections::{BTreeMap, HashMap, HashSet};

use instore::{
    Condition, ControlCommand, Cursor, ErrorLogEntry, ExceptionInfo, ExecutionStatus, GroupBy,
    GroupCount, InstanceFilter, InstanceId, InstanceInfo, InstanceState, InstanceStatus, KeyId,
    KeyState, OwnerId, Page, PageRequest, PendingCommand, QueryProvider, RunnableBacklog,
    StorageError, StoreError, Suspension, Timestamp, Uuid,
};
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, Row};

use crate::error_map::OrStorage;
use crate::{queries, SqliteProvider};

/// Numbered parameters of one statement.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<Sql>);

impl Params {
    /// Binds `value`; returns its placeholder (`?N`), which may be used several times.
    pub(crate) fn bind(&mut self, value: impl Into<Sql>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }

    fn bind_id(&mut self, id: Uuid) -> String {
        self.bind(id.as_bytes().to_vec())
    }

    /// `(?a, ?b, ...)` for `ids`.
    fn list(&mut self, ids: impl IntoIterator<Item = Uuid>) -> String {
        let items: Vec<String> = ids.into_iter().map(|id| self.bind_id(id)).collect();
        format!("({})", items.join(", "))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Sql> {
        self.0.iter()
    }
}

fn micros(t: Timestamp) -> i64 {
    t.as_micros()
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Storage(StorageError::corrupt(what))
}

fn uuid(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|_| corrupt(format!("an id column holds {} bytes, not 16", bytes.len())))
}

fn condition_of_code(code: i64) -> Result<Condition, StoreError> {
    Condition::ALL
        .into_iter()
        .find(|c| i64::from(c.code()) == code)
        .ok_or_else(|| corrupt(format!("unknown condition code {code}")))
}

/// The conditions the filter's status and condition lists allow (`None`: no restriction). An
/// empty set matches nothing.
fn allowed_conditions(filter: &InstanceFilter) -> Option<Vec<Condition>> {
    if filter.status.is_empty() && filter.condition.is_empty() {
        return None;
    }
    Some(
        Condition::ALL
            .into_iter()
            .filter(|c| filter.status.is_empty() || filter.status.contains(&c.status()))
            .filter(|c| filter.condition.is_empty() || filter.condition.contains(c))
            .collect(),
    )
}

/// The derived machine of instance `i` (decision 0007): its live lock holder's, else its last
/// writer's.
fn machine_expr(p: &mut Params, now: Timestamp) -> String {
    let now = p.bind(micros(now));
    format!(
        "coalesce((select o.machine from owners o where o.id = i.lock_owner and o.lease_expires_at > {now}), \
         i.updated_by)"
    )
}

/// Every filter field but the status and condition lists, as clauses on `instances i`.
fn clauses(filter: &InstanceFilter, now: Timestamp, p: &mut Params) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(t) = filter.created_after {
        w.push(format!("i.created_at >= {}", p.bind(micros(t))));
    }
    if let Some(t) = filter.created_before {
        w.push(format!("i.created_at < {}", p.bind(micros(t))));
    }
    if let Some(t) = filter.modified_after {
        w.push(format!("i.updated_at >= {}", p.bind(micros(t))));
    }
    if let Some(t) = filter.modified_before {
        w.push(format!("i.updated_at < {}", p.bind(micros(t))));
    }
    if let Some(e) = &filter.exception {
        // Only a suspension carries an exception (the writer clears it with the suspension).
        w.push(format!("i.exception_name = {}", p.bind(e.clone())));
    }
    if let Some(m) = &filter.machine {
        let expr = machine_expr(p, now);
        w.push(format!("{expr} = {}", p.bind(m.clone())));
    }
    if let Some(h) = &filter.host_type {
        w.push(format!("i.host_type = {}", p.bind(h.clone())));
    }
    if let Some(o) = filter.owner {
        w.push(format!("i.lock_owner = {}", p.bind_id(o.as_uuid())));
    }
    if !filter.ids.is_empty() {
        let list = p.list(filter.ids.iter().map(|id| id.as_uuid()));
        w.push(format!("i.id in {list}"));
    }
    if let Some(k) = filter.key {
        w.push(format!(
            "i.id in (select k.instance from keys k where k.id = {})",
            p.bind_id(k.as_uuid())
        ));
    }
    for (name, text) in &filter.promoted {
        w.push(format!(
            "i.id in (select pv.instance from promoted pv where pv.name = {} and pv.text = {})",
            p.bind(name.clone()),
            p.bind(text.clone())
        ));
    }
    // `in (select ...)`, not `exists`: the (usually small) queue and error log drive the lookup,
    // instead of a probe per instance.
    if let Some(has) = filter.has_pending_command {
        w.push(format!(
            "i.id {}in (select q.instance from control_queue q)",
            if has { "" } else { "not " }
        ));
    }
    if let Some(has) = filter.has_error {
        w.push(format!(
            "i.id {}in (select e.instance from error_log e)",
            if has { "" } else { "not " }
        ));
    }
    w
}

fn where_of(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" where {}", clauses.join(" and "))
    }
}

/// `condition in (...)` for a set of conditions.
fn condition_in(conditions: &[Condition], p: &mut Params) -> String {
    let codes: Vec<String> = conditions
        .iter()
        .map(|c| p.bind(i64::from(c.code())))
        .collect();
    format!("i.condition in ({})", codes.join(", "))
}

/// The page statement: `(created_at, id)` of up to `page.max + 1` matching instances after the
/// cursor, newest first. `None` if the filter can match nothing.
pub(crate) fn page_statement(
    filter: &InstanceFilter,
    page: &PageRequest,
    now: Timestamp,
) -> Option<(String, Params)> {
    let conditions = allowed_conditions(filter);
    if conditions.as_ref().is_some_and(|c| c.is_empty()) {
        return None;
    }
    let mut p = Params::default();
    let mut rest = clauses(filter, now, &mut p);
    if let Some(c) = page.cursor {
        let (at, id) = (p.bind(micros(c.created_at)), p.bind_id(c.id.as_uuid()));
        rest.push(format!("(i.created_at, i.id) < ({at}, {id})"));
    }
    let limit = p.bind(i64::try_from(page.max + 1).unwrap_or(i64::MAX));
    let order = "order by i.created_at desc, i.id desc";
    // By a handful of ids or one key the primary key finds the rows; otherwise one index range
    // per condition (per host type and condition with a host type filter), merged.
    let by_id = !filter.ids.is_empty() || filter.key.is_some();
    let per_condition = match conditions {
        Some(_) | None if by_id => None,
        Some(c) => Some(c),
        None if filter.host_type.is_some() => Some(Condition::ALL.to_vec()),
        None => None,
    };
    let sql = match per_condition {
        None => {
            let mut w = rest;
            if let Some(c) = allowed_conditions(filter) {
                w.push(condition_in(&c, &mut p));
            }
            format!(
                "select i.created_at, i.id from instances i{} {order} limit {limit}",
                where_of(&w)
            )
        }
        Some(conditions) => {
            let branches: Vec<String> = conditions
                .iter()
                .map(|c| {
                    let mut w = vec![format!("i.condition = {}", p.bind(i64::from(c.code())))];
                    w.extend(rest.iter().cloned());
                    format!(
                        "select created_at, id from (select i.created_at, i.id from instances i{} {order} limit {limit})",
                        where_of(&w)
                    )
                })
                .collect();
            format!(
                "{} order by created_at desc, id desc limit {limit}",
                branches.join(" union all ")
            )
        }
    };
    Some((sql, p))
}

/// Whether the filter names nothing but statuses, conditions and a host type: then the
/// `instance_counts` table (kept by triggers) answers counts without reading instances.
fn counted(filter: &InstanceFilter) -> bool {
    InstanceFilter {
        status: Vec::new(),
        condition: Vec::new(),
        host_type: None,
        ..filter.clone()
    }
    .is_empty()
}

/// Clauses on `instance_counts c` for a [`counted`] filter.
fn counts_where(
    filter: &InstanceFilter,
    conditions: Option<&[Condition]>,
    p: &mut Params,
) -> String {
    let mut w = Vec::new();
    if let Some(h) = &filter.host_type {
        w.push(format!("c.host_type = {}", p.bind(h.clone())));
    }
    if let Some(conditions) = conditions {
        let codes: Vec<String> = conditions
            .iter()
            .map(|c| p.bind(i64::from(c.code())))
            .collect();
        w.push(format!("c.condition in ({})", codes.join(", ")));
    }
    where_of(&w)
}

/// The count statement.
pub(crate) fn count_statement(filter: &InstanceFilter, now: Timestamp) -> Option<(String, Params)> {
    let conditions = allowed_conditions(filter);
    if conditions.as_ref().is_some_and(|c| c.is_empty()) {
        return None;
    }
    let mut p = Params::default();
    if counted(filter) {
        let w = counts_where(filter, conditions.as_deref(), &mut p);
        return Some((
            format!("select coalesce(sum(c.n), 0) from instance_counts c{w}"),
            p,
        ));
    }
    let mut w = clauses(filter, now, &mut p);
    if let Some(c) = conditions {
        w.push(condition_in(&c, &mut p));
    }
    Some((
        format!("select count(*) from instances i{}", where_of(&w)),
        p,
    ))
}

/// The group count statement: `(group value, count)` rows.
pub(crate) fn group_statement(
    filter: &InstanceFilter,
    by: GroupBy,
    now: Timestamp,
) -> Option<(String, Params)> {
    let conditions = allowed_conditions(filter);
    if conditions.as_ref().is_some_and(|c| c.is_empty()) {
        return None;
    }
    let mut p = Params::default();
    let fast_key = match by {
        GroupBy::Status | GroupBy::Condition => Some("c.condition"),
        GroupBy::HostType => Some("c.host_type"),
        // Without a live holder, an instance's machine is its last writer's.
        GroupBy::Machine => Some("case when c.has_updated_by then c.updated_by end"),
        GroupBy::Exception => None,
    };
    if let (Some(key), true) = (fast_key, counted(filter)) {
        let w = counts_where(filter, conditions.as_deref(), &mut p);
        return Some((
            format!(
                "select {key} as g, sum(c.n) from instance_counts c{w} group by g having sum(c.n) > 0"
            ),
            p,
        ));
    }
    let key = match by {
        GroupBy::Status | GroupBy::Condition => "i.condition".to_owned(),
        GroupBy::HostType => "i.host_type".to_owned(),
        GroupBy::Exception => "i.exception_name".to_owned(),
        GroupBy::Machine => machine_expr(&mut p, now),
    };
    let mut w = clauses(filter, now, &mut p);
    if let Some(c) = conditions {
        w.push(condition_in(&c, &mut p));
    }
    if by == GroupBy::Exception {
        // The named groups from the partial index; the rest is the count minus them.
        w.push("i.exception_name is not null".to_owned());
    }
    Some((
        format!(
            "select {key} as g, count(*) from instances i{} group by g",
            where_of(&w)
        ),
        p,
    ))
}

/// One instance's own columns and its lock owner's, before the per-page side tables.
struct InfoRow {
    id: Vec<u8>,
    state: i64,
    status: i64,
    created_at: i64,
    updated_at: i64,
    updated_by: Option<String>,
    suspended: bool,
    reason: Option<String>,
    exception_name: Option<String>,
    exception_message: Option<String>,
    bookmarks: String,
    timer: Option<i64>,
    host_type: Option<String>,
    metadata: Vec<u8>,
    metadata_encoding: i64,
    lock_owner: Option<Vec<u8>>,
    owner_machine: Option<String>,
    owner_lease: Option<i64>,
    locked_since: Option<i64>,
    lock_version: i64,
}

const INFO_COLUMNS: &str = "i.id, i.state, i.status, i.created_at, i.updated_at, i.updated_by, i.suspended, \
     i.suspension_reason, i.exception_name, i.exception_message, i.bookmarks, i.timer, i.host_type, i.metadata, \
     i.metadata_encoding, i.lock_owner, o.machine, o.lease_expires_at, i.locked_since, i.lock_version";

fn info_row(r: &Row<'_>) -> rusqlite::Result<InfoRow> {
    Ok(InfoRow {
        id: r.get(0)?,
        state: r.get(1)?,
        status: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        updated_by: r.get(5)?,
        suspended: r.get(6)?,
        reason: r.get(7)?,
        exception_name: r.get(8)?,
        exception_message: r.get(9)?,
        bookmarks: r.get(10)?,
        timer: r.get(11)?,
        host_type: r.get(12)?,
        metadata: r.get(13)?,
        metadata_encoding: r.get(14)?,
        lock_owner: r.get(15)?,
        owner_machine: r.get(16)?,
        owner_lease: r.get(17)?,
        locked_since: r.get(18)?,
        lock_version: r.get(19)?,
    })
}

fn info_of(r: InfoRow) -> Result<InstanceInfo, StoreError> {
    let ts = |t: Option<i64>| t.map(Timestamp::from_micros);
    let suspension = r.suspended.then(|| Suspension {
        reason: r.reason.unwrap_or_default(),
        exception: r.exception_name.map(|name| ExceptionInfo {
            name,
            message: r.exception_message.unwrap_or_default(),
        }),
    });
    let code = i16::try_from(r.metadata_encoding)
        .map_err(|_| corrupt(format!("unknown bag encoding code {}", r.metadata_encoding)))?;
    let metadata = instore::encoding::decode(instore::Encoding::from_code(code)?, &r.metadata)?;
    let owner = r
        .lock_owner
        .map(|b| uuid(&b).map(OwnerId::from_uuid))
        .transpose()?;
    Ok(InstanceInfo {
        id: InstanceId::from_uuid(uuid(&r.id)?),
        // Derived fields: `finish` fills them.
        status: InstanceStatus::Running,
        condition: Condition::Idle,
        machine: None,
        blocked_on: None,
        state: InstanceState::from_code(r.state)?,
        execution_status: ExecutionStatus::from_code(r.status)?,
        created_at: Timestamp::from_micros(r.created_at),
        updated_at: Timestamp::from_micros(r.updated_at),
        updated_by: r.updated_by,
        suspension,
        bookmarks: serde_json::from_str(&r.bookmarks)
            .map_err(|e| corrupt(format!("bookmarks do not parse: {e}")))?,
        timer: ts(r.timer),
        host_type: r.host_type,
        metadata,
        owner,
        owner_machine: r.owner_machine,
        owner_lease_expires_at: ts(r.owner_lease),
        locked_since: ts(r.locked_since),
        lock_version: u64::try_from(r.lock_version)
            .map_err(|_| corrupt("negative lock_version"))?,
        pending_command: None,
        error: None,
        promoted: BTreeMap::new(),
        keys: BTreeMap::new(),
    })
}

fn count_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs `sql` over `ids` (bound as `?1..`), mapping each row.
fn for_ids<T>(
    conn: &Connection,
    sql_with_list: impl FnOnce(&str) -> String,
    ids: &[InstanceId],
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut p = Params::default();
    let list = p.list(ids.iter().map(|id| id.as_uuid()));
    let sql = sql_with_list(&list);
    let mut stmt = conn.prepare_cached(&sql).or_storage()?;
    let rows = stmt
        .query_map(params_from_iter(p.values()), map)
        .or_storage()?
        .collect::<Result<Vec<T>, _>>()
        .or_storage()?;
    Ok(rows)
}

/// The instances `ids` as queries show them, at `now`, in the order of `ids` (missing ones left
/// out). Six statements whatever the number of ids.
pub(crate) fn infos(
    conn: &Connection,
    ids: &[InstanceId],
    now: Timestamp,
) -> Result<Vec<InstanceInfo>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = for_ids(
        conn,
        |list| {
            format!(
                "select {INFO_COLUMNS} from instances i left join owners o on o.id = i.lock_owner where i.id in {list}"
            )
        },
        ids,
        info_row,
    )?;
    let mut by_id: HashMap<InstanceId, InstanceInfo> = HashMap::with_capacity(rows.len());
    for row in rows {
        let info = info_of(row)?;
        by_id.insert(info.id, info);
    }

    let keys = for_ids(
        conn,
        |list| format!("select instance, id, state from keys where instance in {list}"),
        ids,
        |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    for (instance, key, state) in keys {
        if let Some(info) = by_id.get_mut(&InstanceId::from_uuid(uuid(&instance)?)) {
            info.keys
                .insert(KeyId::from_uuid(uuid(&key)?), KeyState::from_code(state)?);
        }
    }

    let promoted = for_ids(
        conn,
        |list| format!("select instance, name, kind, value from promoted where instance in {list}"),
        ids,
        |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Sql>(3)?,
            ))
        },
    )?;
    for (instance, name, kind, value) in promoted {
        if let Some(info) = by_id.get_mut(&InstanceId::from_uuid(uuid(&instance)?)) {
            info.promoted
                .insert(name, crate::promoted::load(kind, value)?);
        }
    }

    let queued = for_ids(
        conn,
        |list| {
            format!(
                "select instance, command, reason, attempts, enqueued_at, locked_until, last_error from control_queue \
                 where instance in {list}"
            )
        },
        ids,
        |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        },
    )?;
    for (instance, command, reason, attempts, enqueued_at, locked_until, last_error) in queued {
        if let Some(info) = by_id.get_mut(&InstanceId::from_uuid(uuid(&instance)?)) {
            info.pending_command = Some(PendingCommand {
                command: ControlCommand::from_code(command, reason)?,
                attempts: count_u32(attempts),
                enqueued_at: Timestamp::from_micros(enqueued_at),
                locked_until: locked_until.map(Timestamp::from_micros),
                last_error,
            });
        }
    }

    let errors = for_ids(
        conn,
        |list| format!("select {ERROR_COLUMNS} from error_log where instance in {list}"),
        ids,
        raw_error,
    )?;
    for raw in errors {
        let entry = error_entry(raw)?;
        if let Some(info) = by_id.get_mut(&entry.instance) {
            info.error = Some(entry);
        }
    }

    let live = live_host_types(conn, now)?;
    Ok(ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(|info| {
            let alive = info.host_type.as_ref().is_some_and(|h| live.contains(h));
            info.finish(now, alive)
        })
        .collect())
}

/// Host types with an owner whose lease is alive at `now`.
fn live_host_types(conn: &Connection, now: Timestamp) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "select distinct host_type from owners where lease_expires_at > ?1 and host_type is not null",
        )
        .or_storage()?;
    let types = stmt
        .query_map([micros(now)], |r| r.get::<_, String>(0))
        .or_storage()?
        .collect::<Result<HashSet<_>, _>>()
        .or_storage()?;
    Ok(types)
}

/// The columns of an error-log row, in [`raw_error`]'s order.
pub(crate) const ERROR_COLUMNS: &str =
    "instance, command, reason, code, message, last_attempt_at, machine, attempts";

/// The raw columns of an error-log row.
pub(crate) type RawError = (
    Vec<u8>,
    i64,
    Option<String>,
    String,
    String,
    i64,
    String,
    i64,
);

pub(crate) fn raw_error(r: &Row<'_>) -> rusqlite::Result<RawError> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

pub(crate) fn error_entry(raw: RawError) -> Result<ErrorLogEntry, StoreError> {
    let (instance, command, reason, code, message, last_attempt_at, machine, attempts) = raw;
    Ok(ErrorLogEntry {
        instance: InstanceId::from_uuid(uuid(&instance)?),
        command: ControlCommand::from_code(command, reason)?,
        code,
        message,
        last_attempt_at: Timestamp::from_micros(last_attempt_at),
        machine,
        attempts: count_u32(attempts),
    })
}

/// A page of instances (see [`page_statement`]).
pub(crate) fn page(
    conn: &Connection,
    filter: &InstanceFilter,
    page: &PageRequest,
    now: Timestamp,
) -> Result<Page<InstanceInfo>, StoreError> {
    let Some((sql, p)) = page_statement(filter, page, now) else {
        return Ok(Page {
            items: Vec::new(),
            next: None,
        });
    };
    let mut stmt = conn.prepare_cached(&sql).or_storage()?;
    let found: Vec<(i64, Vec<u8>)> = stmt
        .query_map(params_from_iter(p.values()), |r| Ok((r.get(0)?, r.get(1)?)))
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    let more = found.len() > page.max;
    let ids = found
        .iter()
        .take(page.max)
        .map(|(_, id)| uuid(id).map(InstanceId::from_uuid))
        .collect::<Result<Vec<_>, _>>()?;
    let items = infos(conn, &ids, now)?;
    let next = match (more, items.last()) {
        (true, Some(last)) => Some(Cursor {
            created_at: last.created_at,
            id: last.id,
        }),
        _ => None,
    };
    Ok(Page { items, next })
}

pub(crate) fn count(
    conn: &Connection,
    filter: &InstanceFilter,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let Some((sql, p)) = count_statement(filter, now) else {
        return Ok(0);
    };
    let n: i64 = conn
        .prepare_cached(&sql)
        .or_storage()?
        .query_row(params_from_iter(p.values()), |r| r.get(0))
        .or_storage()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// For a [`counted`] filter grouped by machine: the instances held by a live owner, by their
/// last writer's machine (what `instance_counts` counted them under) and the holder's machine
/// (where they belong). Reads only locked rows.
pub(crate) fn live_holders_statement(filter: &InstanceFilter, now: Timestamp) -> (String, Params) {
    let mut p = Params::default();
    let mut w = vec![format!("o.lease_expires_at > {}", p.bind(micros(now)))];
    if let Some(h) = &filter.host_type {
        w.push(format!("i.host_type = {}", p.bind(h.clone())));
    }
    if let Some(c) = allowed_conditions(filter) {
        w.push(condition_in(&c, &mut p));
    }
    (
        format!(
            "select i.updated_by, o.machine, count(*) from owners o join instances i on i.lock_owner = o.id{} \
             group by 1, 2",
            where_of(&w)
        ),
        p,
    )
}

pub(crate) fn group_count(
    conn: &Connection,
    filter: &InstanceFilter,
    by: GroupBy,
    now: Timestamp,
) -> Result<Vec<GroupCount>, StoreError> {
    let Some((sql, p)) = group_statement(filter, by, now) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&sql).or_storage()?;
    let rows: Vec<(Sql, i64)> = stmt
        .query_map(params_from_iter(p.values()), |r| Ok((r.get(0)?, r.get(1)?)))
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    let mut groups: BTreeMap<Option<String>, i64> = BTreeMap::new();
    for (key, n) in rows {
        let key = match (by, key) {
            (GroupBy::Status, Sql::Integer(code)) => {
                Some(condition_of_code(code)?.status().name().to_owned())
            }
            (GroupBy::Condition, Sql::Integer(code)) => {
                Some(condition_of_code(code)?.name().to_owned())
            }
            // `instance_counts` spells "no host type" as ''.
            (_, Sql::Null) => None,
            (GroupBy::HostType, Sql::Text(s)) if s.is_empty() => None,
            (_, Sql::Text(s)) => Some(s),
            (_, other) => {
                return Err(corrupt(format!(
                    "a {} group value is stored as {:?}",
                    by.name(),
                    other.data_type()
                )))
            }
        };
        *groups.entry(key).or_default() += n;
    }
    match by {
        GroupBy::Exception => {
            let named: i64 = groups.values().sum();
            let all = i64::try_from(count(conn, filter, now)?).unwrap_or(i64::MAX);
            groups.insert(None, all - named);
        }
        GroupBy::Machine if counted(filter) => {
            let (sql, p) = live_holders_statement(filter, now);
            let mut stmt = conn.prepare_cached(&sql).or_storage()?;
            let moved: Vec<(Option<String>, String, i64)> = stmt
                .query_map(params_from_iter(p.values()), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .or_storage()?
                .collect::<Result<_, _>>()
                .or_storage()?;
            for (last_writer, holder, n) in moved {
                *groups.entry(last_writer).or_default() -= n;
                *groups.entry(Some(holder)).or_default() += n;
            }
        }
        _ => {}
    }
    Ok(groups
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(key, count)| GroupCount {
            key,
            count: u64::try_from(count).unwrap_or(0),
        })
        .collect())
}

/// Deletes up to `limit` completed instances last changed before `before`, oldest first, with
/// everything that belongs to them. Returns how many.
pub(crate) fn purge(conn: &Connection, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
    let ids: Vec<Vec<u8>> = conn
        .prepare_cached(
            "select id from instances where state = 3 and updated_at < ?1 order by updated_at, id limit ?2",
        )
        .or_storage()?
        .query_map(
            rusqlite::params![micros(before), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    let mut purged = 0;
    for id in ids {
        if queries::remove_instance(conn, InstanceId::from_uuid(uuid(&id)?))? {
            purged += 1;
        }
    }
    Ok(purged)
}

#[async_trait::async_trait]
impl QueryProvider for SqliteProvider {
    async fn query(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<InstanceInfo>, StoreError> {
        filter.validate()?;
        page.validate()?;
        let now = self.clock.now();
        let (filter, request) = (filter.clone(), page.clone());
        self.readers
            .read(move |conn| {
                let tx = conn.unchecked_transaction().or_storage()?;
                let found = self::page(&tx, &filter, &request, now)?;
                tx.finish().or_storage()?;
                Ok(found)
            })
            .await
    }

    async fn count(&self, filter: &InstanceFilter) -> Result<u64, StoreError> {
        filter.validate()?;
        let now = self.clock.now();
        let filter = filter.clone();
        self.readers
            .read(move |conn| self::count(conn, &filter, now))
            .await
    }

    async fn group_count(
        &self,
        filter: &InstanceFilter,
        by: GroupBy,
    ) -> Result<Vec<GroupCount>, StoreError> {
        filter.validate()?;
        let now = self.clock.now();
        let filter = filter.clone();
        self.readers
            .read(move |conn| {
                // By exception or machine: two statements, one snapshot.
                let tx = conn.unchecked_transaction().or_storage()?;
                let groups = self::group_count(&tx, &filter, by, now)?;
                tx.finish().or_storage()?;
                Ok(groups)
            })
            .await
    }

    async fn runnable_backlog(&self) -> Result<Vec<RunnableBacklog>, StoreError> {
        let now = self.clock.now();
        let rows = self
            .readers
            .read(move |conn| queries::runnable_backlog(conn, now))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(host_type, count, oldest_since)| RunnableBacklog {
                host_type,
                count,
                oldest_since,
            })
            .collect())
    }

    async fn purge_completed(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        self.writer
            .call(move |conn| Ok((purge(conn, before, limit)?, false)))
            .await
    }
}
