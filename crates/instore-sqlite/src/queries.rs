//! Rows and the statements that read and write them: one function per statement, explicit
//! column lists. Ids are 16-byte blobs, instants are microseconds since the Unix epoch, bags are
//! encoded blobs with their encoding recorded next to them.

use instore::encoding::{decode, encode, EncodedBag, Encoding, EncodingSettings};
use instore::{
    promoted_text, ExceptionInfo, ExecutionStatus, InstanceId, InstanceState, KeyId, KeyState,
    OwnerId, OwnerInfo, PropertyBag, StorageError, StoreError, Suspension, Timestamp, Uuid, Value,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error_map::OrStorage;

/// An instance row.
#[derive(Debug, Clone)]
pub(crate) struct InstanceRow {
    pub(crate) id: InstanceId,
    pub(crate) state: InstanceState,
    pub(crate) lock_owner: Option<OwnerId>,
    pub(crate) last_lock_owner: Option<OwnerId>,
    pub(crate) lock_version: u64,
    pub(crate) status: ExecutionStatus,
    pub(crate) timer: Option<Timestamp>,
    pub(crate) ready_at: Option<Timestamp>,
    pub(crate) suspension: Option<Suspension>,
    pub(crate) host_type: Option<String>,
    pub(crate) bookmarks: Vec<String>,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    /// The machine of the owner that created the row, then of each save's owner.
    pub(crate) updated_by: Option<String>,
    /// When the current holder took the lock.
    pub(crate) locked_since: Option<Timestamp>,
    pub(crate) data: EncodedBag,
    pub(crate) metadata: EncodedBag,
}

/// A key row.
#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub(crate) instance: InstanceId,
    pub(crate) state: KeyState,
    pub(crate) metadata: PropertyBag,
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Storage(StorageError::corrupt(what))
}

fn uuid(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|_| corrupt(format!("an id column holds {} bytes, not 16", bytes.len())))
}

fn ts(micros: Option<i64>) -> Option<Timestamp> {
    micros.map(Timestamp::from_micros)
}

fn bag_of(encoding: i64, bytes: Vec<u8>, logical_len: i64) -> Result<EncodedBag, StoreError> {
    let code = i16::try_from(encoding)
        .map_err(|_| corrupt(format!("unknown bag encoding code {encoding}")))?;
    Ok(EncodedBag {
        encoding: Encoding::from_code(code)?,
        bytes,
        logical_len: usize::try_from(logical_len).unwrap_or(0),
    })
}

/// Decodes a blob column pair into a bag.
pub(crate) fn decode_bag(bag: &EncodedBag) -> Result<PropertyBag, StoreError> {
    decode(bag.encoding, &bag.bytes)
}

const INSTANCE_COLUMNS: &str = "id, state, lock_owner, last_lock_owner, lock_version, status, timer, ready_at, \
     suspended, suspension_reason, exception_name, exception_message, host_type, bookmarks, created_at, updated_at, \
     updated_by, locked_since, data, data_encoding, data_len, metadata, metadata_encoding, metadata_len";

/// The raw columns of an instance row; converted outside rusqlite's row callback so that a
/// damaged value becomes our corrupt-row error.
type RawInstance = (
    Vec<u8>,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    (Option<String>, Option<i64>),
    (Vec<u8>, i64, i64, Vec<u8>, i64, i64),
);

fn raw_instance(r: &Row<'_>) -> rusqlite::Result<RawInstance> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
        r.get(15)?,
        (r.get(16)?, r.get(17)?),
        (
            r.get(18)?,
            r.get(19)?,
            r.get(20)?,
            r.get(21)?,
            r.get(22)?,
            r.get(23)?,
        ),
    ))
}

fn instance_of(raw: RawInstance) -> Result<InstanceRow, StoreError> {
    let (
        id,
        state,
        lock_owner,
        last_lock_owner,
        lock_version,
        status,
        timer,
        ready_at,
        suspended,
        reason,
        ex_name,
        ex_msg,
        host_type,
        bookmarks,
        created_at,
        updated_at,
        (updated_by, locked_since),
        blobs,
    ) = raw;
    let (data, data_encoding, data_len, metadata, metadata_encoding, metadata_len) = blobs;
    let owner = |b: Option<Vec<u8>>| -> Result<Option<OwnerId>, StoreError> {
        b.map(|b| uuid(&b).map(OwnerId::from_uuid)).transpose()
    };
    let suspension = suspended.then(|| Suspension {
        reason: reason.unwrap_or_default(),
        exception: ex_name.map(|name| ExceptionInfo {
            name,
            message: ex_msg.unwrap_or_default(),
        }),
    });
    Ok(InstanceRow {
        id: InstanceId::from_uuid(uuid(&id)?),
        state: InstanceState::from_code(state)?,
        lock_owner: owner(lock_owner)?,
        last_lock_owner: owner(last_lock_owner)?,
        lock_version: u64::try_from(lock_version).map_err(|_| corrupt("negative lock_version"))?,
        status: ExecutionStatus::from_code(status)?,
        timer: ts(timer),
        ready_at: ts(ready_at),
        suspension,
        host_type,
        bookmarks: serde_json::from_str(&bookmarks)
            .map_err(|e| corrupt(format!("bookmarks do not parse: {e}")))?,
        created_at: Timestamp::from_micros(created_at),
        updated_at: Timestamp::from_micros(updated_at),
        updated_by,
        locked_since: ts(locked_since),
        data: bag_of(data_encoding, data, data_len)?,
        metadata: bag_of(metadata_encoding, metadata, metadata_len)?,
    })
}

pub(crate) fn get_instance(
    conn: &Connection,
    id: InstanceId,
) -> Result<Option<InstanceRow>, StoreError> {
    select_instance(conn, id, INSTANCE_COLUMNS)
}

/// An instance row without its data blob (`data` left empty, `data_len` kept): for a save that
/// replaces the data anyway, so the old blob is never copied out of the database.
pub(crate) fn get_instance_without_data(
    conn: &Connection,
    id: InstanceId,
) -> Result<Option<InstanceRow>, StoreError> {
    const COLUMNS: &str = "id, state, lock_owner, last_lock_owner, lock_version, status, timer, ready_at, \
         suspended, suspension_reason, exception_name, exception_message, host_type, bookmarks, created_at, \
         updated_at, updated_by, locked_since, x'', data_encoding, data_len, metadata, metadata_encoding, metadata_len";
    select_instance(conn, id, COLUMNS)
}

fn select_instance(
    conn: &Connection,
    id: InstanceId,
    columns: &str,
) -> Result<Option<InstanceRow>, StoreError> {
    let sql = format!("select {columns} from instances where id = ?1");
    let raw = conn
        .prepare_cached(&sql)
        .or_storage()?
        .query_row([id.as_uuid().as_bytes().as_slice()], raw_instance)
        .optional()
        .or_storage()?;
    raw.map(instance_of).transpose()
}

pub(crate) fn put_instance(conn: &Connection, row: &InstanceRow) -> Result<(), StoreError> {
    let sql = format!(
        "insert into instances ({INSTANCE_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
         ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24) \
         on conflict (id) do update set state = ?2, lock_owner = ?3, last_lock_owner = ?4, lock_version = ?5, \
         status = ?6, timer = ?7, ready_at = ?8, suspended = ?9, suspension_reason = ?10, exception_name = ?11, \
         exception_message = ?12, host_type = ?13, bookmarks = ?14, updated_at = ?16, updated_by = ?17, \
         locked_since = ?18, data = ?19, data_encoding = ?20, data_len = ?21, metadata = ?22, metadata_encoding = ?23, \
         metadata_len = ?24"
    );
    let owner = |o: Option<OwnerId>| o.map(|o| o.as_uuid().as_bytes().to_vec());
    let ex = row.suspension.as_ref().and_then(|s| s.exception.as_ref());
    let bookmarks = serde_json::to_string(&row.bookmarks).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(&sql)
        .or_storage()?
        .execute(params![
            row.id.as_uuid().as_bytes().as_slice(),
            i64::from(row.state.code()),
            owner(row.lock_owner),
            owner(row.last_lock_owner),
            i64::try_from(row.lock_version).unwrap_or(i64::MAX),
            i64::from(row.status.code()),
            row.timer.map(|t| t.as_micros()),
            row.ready_at.map(|t| t.as_micros()),
            row.suspension.is_some(),
            row.suspension.as_ref().map(|s| s.reason.as_str()),
            ex.map(|e| e.name.as_str()),
            ex.map(|e| e.message.as_str()),
            row.host_type.as_deref(),
            bookmarks,
            row.created_at.as_micros(),
            row.updated_at.as_micros(),
            row.updated_by.as_deref(),
            row.locked_since.map(|t| t.as_micros()),
            row.data.bytes,
            i64::from(row.data.encoding.code()),
            i64::try_from(row.data.logical_len).unwrap_or(i64::MAX),
            row.metadata.bytes,
            i64::from(row.metadata.encoding.code()),
            i64::try_from(row.metadata.logical_len).unwrap_or(i64::MAX),
        ])
        .or_storage()?;
    Ok(())
}

/// Deletes an instance and everything that belongs to it: keys, promoted values, queued control
/// command, error-log entry. Returns whether the instance existed (if not, nothing is deleted).
pub(crate) fn remove_instance(conn: &Connection, id: InstanceId) -> Result<bool, StoreError> {
    let bytes = *id.as_uuid().as_bytes();
    let id = bytes.as_slice();
    let removed = conn
        .prepare_cached("delete from instances where id = ?1")
        .or_storage()?
        .execute([id])
        .or_storage()?;
    if removed == 0 {
        return Ok(false);
    }
    for sql in [
        "delete from keys where instance = ?1",
        "delete from promoted where instance = ?1",
        "delete from control_queue where instance = ?1",
        "delete from error_log where instance = ?1",
    ] {
        conn.prepare_cached(sql)
            .or_storage()?
            .execute([id])
            .or_storage()?;
    }
    Ok(true)
}

/// Replaces an instance's promoted values.
pub(crate) fn replace_promoted(
    conn: &Connection,
    id: InstanceId,
    promoted: &std::collections::BTreeMap<String, Value>,
) -> Result<(), StoreError> {
    let bytes = *id.as_uuid().as_bytes();
    let id = bytes.as_slice();
    conn.prepare_cached("delete from promoted where instance = ?1")
        .or_storage()?
        .execute([id])
        .or_storage()?;
    let mut insert = conn
        .prepare_cached(
            "insert into promoted (instance, name, text, kind, value) values (?1, ?2, ?3, ?4, ?5)",
        )
        .or_storage()?;
    for (name, value) in promoted {
        let (kind, stored) = crate::promoted::store(value);
        insert
            .execute(params![id, name, promoted_text(value), kind, stored])
            .or_storage()?;
    }
    Ok(())
}

/// Overwrites an instance's data blob (tests of corrupt-row handling).
pub(crate) fn damage_data(conn: &Connection, id: InstanceId) -> Result<usize, StoreError> {
    conn.execute(
        "update instances set data = x'ffffff', data_encoding = 1 where id = ?1",
        [id.as_uuid().as_bytes().as_slice()],
    )
    .or_storage()
}

const OWNER_COLUMNS: &str =
    "id, host_type, metadata, metadata_encoding, machine, created_at, lease_expires_at";

/// The raw columns of an owner row.
type RawOwner = (Vec<u8>, Option<String>, Vec<u8>, i64, String, i64, i64);

fn owner_of(r: &Row<'_>) -> rusqlite::Result<RawOwner> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn owner_info(raw: RawOwner) -> Result<OwnerInfo, StoreError> {
    let (id, host_type, metadata, encoding, machine, created_at, lease_expires_at) = raw;
    let metadata = decode_bag(&bag_of(encoding, metadata, 0)?)?;
    Ok(OwnerInfo {
        id: OwnerId::from_uuid(uuid(&id)?),
        host_type,
        metadata,
        machine,
        created_at: Timestamp::from_micros(created_at),
        lease_expires_at: Timestamp::from_micros(lease_expires_at),
    })
}

pub(crate) fn get_owner(conn: &Connection, id: OwnerId) -> Result<Option<OwnerInfo>, StoreError> {
    let sql = format!("select {OWNER_COLUMNS} from owners where id = ?1");
    let raw = conn
        .prepare_cached(&sql)
        .or_storage()?
        .query_row([id.as_uuid().as_bytes().as_slice()], owner_of)
        .optional()
        .or_storage()?;
    raw.map(owner_info).transpose()
}

/// What an acquiring or saving operation needs of its owner, without decoding its metadata.
#[derive(Debug, Clone)]
pub(crate) struct OwnerBrief {
    pub(crate) machine: String,
    pub(crate) host_type: Option<String>,
}

pub(crate) fn owner_brief(
    conn: &Connection,
    id: OwnerId,
) -> Result<Option<OwnerBrief>, StoreError> {
    conn.prepare_cached("select machine, host_type from owners where id = ?1")
        .or_storage()?
        .query_row([id.as_uuid().as_bytes().as_slice()], |r| {
            Ok(OwnerBrief {
                machine: r.get(0)?,
                host_type: r.get(1)?,
            })
        })
        .optional()
        .or_storage()
}

/// The lease end of an owner, if it exists.
pub(crate) fn lease_of(conn: &Connection, id: OwnerId) -> Result<Option<Timestamp>, StoreError> {
    let micros: Option<i64> = conn
        .prepare_cached("select lease_expires_at from owners where id = ?1")
        .or_storage()?
        .query_row([id.as_uuid().as_bytes().as_slice()], |r| r.get(0))
        .optional()
        .or_storage()?;
    Ok(ts(micros))
}

pub(crate) fn insert_owner(conn: &Connection, o: &OwnerInfo) -> Result<(), StoreError> {
    let metadata = encode(&o.metadata, &EncodingSettings::default());
    conn.prepare_cached(&format!(
        "insert into owners ({OWNER_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))
    .or_storage()?
    .execute(params![
        o.id.as_uuid().as_bytes().as_slice(),
        o.host_type.as_deref(),
        metadata.bytes,
        i64::from(metadata.encoding.code()),
        o.machine,
        o.created_at.as_micros(),
        o.lease_expires_at.as_micros(),
    ])
    .or_storage()?;
    Ok(())
}

pub(crate) fn set_lease(
    conn: &Connection,
    id: OwnerId,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached("update owners set lease_expires_at = ?2 where id = ?1")
        .or_storage()?
        .execute(params![
            id.as_uuid().as_bytes().as_slice(),
            expires_at.as_micros()
        ])
        .or_storage()?;
    Ok(())
}

/// Deletes owners whose lease has ended and that hold no lock.
pub(crate) fn clean_up_owners(conn: &Connection, now: Timestamp) -> Result<(), StoreError> {
    conn.prepare_cached(
        "delete from owners where lease_expires_at <= ?1 \
         and not exists (select 1 from instances where instances.lock_owner = owners.id)",
    )
    .or_storage()?
    .execute([now.as_micros()])
    .or_storage()?;
    Ok(())
}

pub(crate) fn list_owners(conn: &Connection) -> Result<Vec<OwnerInfo>, StoreError> {
    let sql = format!("select {OWNER_COLUMNS} from owners order by created_at, id");
    let mut stmt = conn.prepare_cached(&sql).or_storage()?;
    let raws: Vec<_> = stmt
        .query_map([], owner_of)
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    raws.into_iter().map(owner_info).collect()
}

/// The raw columns of a key row.
type RawKey = (Vec<u8>, Vec<u8>, i64, Vec<u8>, i64);

fn key_of(r: &Row<'_>) -> rusqlite::Result<RawKey> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn key_row(raw: RawKey) -> Result<(KeyId, KeyRow), StoreError> {
    let (id, instance, state, metadata, encoding) = raw;
    Ok((
        KeyId::from_uuid(uuid(&id)?),
        KeyRow {
            instance: InstanceId::from_uuid(uuid(&instance)?),
            state: KeyState::from_code(state)?,
            metadata: decode_bag(&bag_of(encoding, metadata, 0)?)?,
        },
    ))
}

pub(crate) fn get_key(conn: &Connection, key: KeyId) -> Result<Option<KeyRow>, StoreError> {
    let raw = conn
        .prepare_cached(
            "select id, instance, state, metadata, metadata_encoding from keys where id = ?1",
        )
        .or_storage()?
        .query_row([key.as_uuid().as_bytes().as_slice()], key_of)
        .optional()
        .or_storage()?;
    Ok(raw.map(key_row).transpose()?.map(|(_, row)| row))
}

pub(crate) fn keys_of(
    conn: &Connection,
    instance: InstanceId,
) -> Result<Vec<(KeyId, KeyRow)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("select id, instance, state, metadata, metadata_encoding from keys where instance = ?1 order by id")
        .or_storage()?;
    let raws: Vec<_> = stmt
        .query_map([instance.as_uuid().as_bytes().as_slice()], key_of)
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    raws.into_iter().map(key_row).collect()
}

pub(crate) fn put_key(conn: &Connection, key: KeyId, row: &KeyRow) -> Result<(), StoreError> {
    let metadata = encode(&row.metadata, &EncodingSettings::default());
    conn.prepare_cached(
        "insert into keys (id, instance, state, metadata, metadata_encoding) values (?1, ?2, ?3, ?4, ?5) \
         on conflict (id) do update set instance = ?2, state = ?3, metadata = ?4, metadata_encoding = ?5",
    )
    .or_storage()?
    .execute(params![
        key.as_uuid().as_bytes().as_slice(),
        row.instance.as_uuid().as_bytes().as_slice(),
        i64::from(row.state.code()),
        metadata.bytes,
        i64::from(metadata.encoding.code()),
    ])
    .or_storage()?;
    Ok(())
}

pub(crate) fn delete_key(conn: &Connection, key: KeyId) -> Result<(), StoreError> {
    conn.prepare_cached("delete from keys where id = ?1")
        .or_storage()?
        .execute([key.as_uuid().as_bytes().as_slice()])
        .or_storage()?;
    Ok(())
}

pub(crate) fn complete_keys_of(conn: &Connection, instance: InstanceId) -> Result<(), StoreError> {
    conn.prepare_cached("update keys set state = 2 where instance = ?1")
        .or_storage()?
        .execute([instance.as_uuid().as_bytes().as_slice()])
        .or_storage()?;
    Ok(())
}

/// Runnable candidates of a host type at `now`, earliest first: unlocked ready instances, and
/// initialized, unsuspended instances whose holder's lease has ended (or whose holder is gone).
pub(crate) fn runnable_candidates(
    conn: &Connection,
    host_type: &str,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<(Timestamp, InstanceId)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "select since, id from ( \
               select ready_at as since, id from instances \
                 where host_type = ?1 and lock_owner is null and ready_at is not null and ready_at <= ?2 \
                   and state = 2 and suspended = 0 \
               union all \
               select coalesce(o.lease_expires_at, 0) as since, i.id from instances i \
                 left join owners o on o.id = i.lock_owner \
                 where i.host_type = ?1 and i.lock_owner is not null and i.state = 2 and i.suspended = 0 \
                   and coalesce(o.lease_expires_at, 0) <= ?2 \
             ) order by since, id limit ?3",
        )
        .or_storage()?;
    let rows: Vec<(i64, Vec<u8>)> = stmt
        .query_map(
            params![
                host_type,
                now.as_micros(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    rows.into_iter()
        .map(|(since, id)| {
            Ok((
                Timestamp::from_micros(since),
                InstanceId::from_uuid(uuid(&id)?),
            ))
        })
        .collect()
}

/// When the next instance of a host type becomes runnable (maybe already).
pub(crate) fn next_runnable(
    conn: &Connection,
    host_type: &str,
) -> Result<Option<Timestamp>, StoreError> {
    let micros: Option<i64> = conn
        .prepare_cached(
            "select min(t) from ( \
               select min(ready_at) as t from instances \
                 where host_type = ?1 and lock_owner is null and ready_at is not null and state = 2 and suspended = 0 \
               union all \
               select min(coalesce(o.lease_expires_at, 0)) from instances i left join owners o on o.id = i.lock_owner \
                 where i.host_type = ?1 and i.lock_owner is not null and i.state = 2 and i.suspended = 0 \
             )",
        )
        .or_storage()?
        .query_row([host_type], |r| r.get(0))
        .or_storage()?;
    Ok(ts(micros))
}

/// Host types with instances runnable at `now` and no owner of that type whose lease is alive.
pub(crate) fn activatable(
    conn: &Connection,
    now: Timestamp,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "select host_type, count(*) from ( \
               select host_type from instances \
                 where lock_owner is null and ready_at is not null and ready_at <= ?1 and state = 2 and suspended = 0 \
                   and host_type is not null \
               union all \
               select i.host_type from instances i left join owners o on o.id = i.lock_owner \
                 where i.lock_owner is not null and i.state = 2 and i.suspended = 0 and i.host_type is not null \
                   and coalesce(o.lease_expires_at, 0) <= ?1 \
             ) r where not exists (select 1 from owners w where w.host_type = r.host_type and w.lease_expires_at > ?1) \
             group by host_type order by host_type",
        )
        .or_storage()?;
    let rows: Vec<(String, i64)> = stmt
        .query_map([now.as_micros()], |r| Ok((r.get(0)?, r.get(1)?)))
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    Ok(rows
        .into_iter()
        .map(|(h, n)| (h, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// The text of [`runnable_backlog`], for its plan test.
pub(crate) const RUNNABLE_BACKLOG: &str = "\
with recursive types(host_type) as ( \
    select min(host_type) from instances where lock_owner is null and ready_at is not null \
    union all \
    select (select min(i.host_type) from instances i \
            where i.lock_owner is null and i.ready_at is not null and i.host_type > t.host_type) \
    from types t where t.host_type is not null \
), \
runnable(host_type, since) as ( \
    select i.host_type, i.ready_at from types t join instances i on i.host_type = t.host_type \
      where i.lock_owner is null and i.ready_at is not null and i.ready_at <= ?1 \
        and i.state = 2 and i.suspended = 0 \
    union all \
    select host_type, ready_at from instances \
      where host_type is null and lock_owner is null and ready_at is not null and ready_at <= ?1 \
        and state = 2 and suspended = 0 \
    union all \
    select i.host_type, o.lease_expires_at from owners o cross join instances i on i.lock_owner = o.id \
      where o.lease_expires_at <= ?1 and i.state = 2 and i.suspended = 0 \
) \
select host_type, count(*), min(since) from runnable group by host_type order by host_type";

/// The runnable backlog at `now` per host type (`None` first): how many instances are
/// runnable and since when the oldest is (SPEC §8; `QueryProvider::runnable_backlog`).
///
/// Reads only runnable candidates. Ready instances: the host types of `instances_ready` are
/// found by skipping through the index (one seek per host type, a loose index scan), then each
/// host type's due entries are one range of it (`host_type = ? and ready_at <= now`) — waiting
/// timers are never read. Dead holders: the owners whose lease ended (a small table, read first:
/// `cross join` keeps that order), then their instances through `instances_locked`; the store
/// never deletes an owner that still holds a lock, so no lock points at a missing owner. Each
/// candidate's row is read (SQLite does not take the partial index as covering), so the
/// initialized-and-not-suspended check TryLoadRunnable makes costs nothing more. The cost grows
/// with the backlog and the dead holders' locks, not with the number of instances.
pub(crate) fn runnable_backlog(
    conn: &Connection,
    now: Timestamp,
) -> Result<Vec<(Option<String>, u64, Timestamp)>, StoreError> {
    let mut stmt = conn.prepare_cached(RUNNABLE_BACKLOG).or_storage()?;
    let rows: Vec<(Option<String>, i64, i64)> = stmt
        .query_map([now.as_micros()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .or_storage()?
        .collect::<Result<_, _>>()
        .or_storage()?;
    Ok(rows
        .into_iter()
        .map(|(h, n, since)| {
            (
                h,
                u64::try_from(n).unwrap_or(0),
                Timestamp::from_micros(since),
            )
        })
        .collect())
}

/// Whether `owner` holds any lock.
pub(crate) fn holds_locks(conn: &Connection, owner: OwnerId) -> Result<bool, StoreError> {
    conn.prepare_cached("select exists (select 1 from instances where lock_owner = ?1)")
        .or_storage()?
        .query_row([owner.as_uuid().as_bytes().as_slice()], |r| r.get(0))
        .or_storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backlog sampled at every `/metrics` scrape reads only runnable candidates: every
    /// access to `instances` goes through `instances_ready` (a seek per host type, then the due
    /// range) or `instances_locked` (the instances of owners whose lease ended), never a scan of
    /// the table or of the whole ready index.
    #[test]
    fn runnable_backlog_reads_only_runnable_candidates() {
        let mut conn = Connection::open_in_memory().expect("test setup");
        crate::schema::migrate(&mut conn, 0, 0).expect("test setup");
        let mut stmt = conn
            .prepare(&format!("explain query plan {RUNNABLE_BACKLOG}"))
            .expect("test setup");
        let plan: Vec<String> = stmt
            .query_map([0i64], |r| r.get::<_, String>(3))
            .expect("test setup")
            .map(Result::unwrap)
            .collect();
        let text = plan.join("\n");
        for line in &plan {
            if line.contains("instances") || line.ends_with(" i") || line.contains(" i ") {
                assert!(
                    line.starts_with("SEARCH") && line.contains("USING INDEX"),
                    "{line}\n{text}"
                );
            }
        }
        for range in [
            "instances_ready (host_type=? AND ready_at>? AND ready_at<?)",
            "instances_ready (host_type>?)",
            "instances_locked (lock_owner=?)",
        ] {
            assert!(text.contains(range), "{range} missing:\n{text}");
        }
        assert!(text.contains("SCAN o"), "owners first:\n{text}");
    }
}
